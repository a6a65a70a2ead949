//! `KSTREAMS_MACROS_DEBUG=1`: print each expansion at compile time, roughly indented.

use proc_macro2::{Delimiter, TokenStream, TokenTree};

pub(crate) fn print(macro_name: &str, tokens: &TokenStream) {
    if std::env::var_os("KSTREAMS_MACROS_DEBUG").is_some_and(|v| v == "1") {
        eprintln!(
            "kstreams-macros: #[{macro_name}] expands to:\n{}",
            pretty(tokens)
        );
    }
}

/// A readable layout of tokens: a line per statement or item, braces indented.
pub(crate) fn pretty(tokens: &TokenStream) -> String {
    let mut out = String::new();
    write(tokens.clone(), 0, &mut out);
    out.lines()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

fn newline(depth: usize, out: &mut String) {
    out.push('\n');
    out.push_str(&"    ".repeat(depth));
}

fn write(tokens: TokenStream, depth: usize, out: &mut String) {
    for tt in tokens {
        match tt {
            TokenTree::Group(g) if g.delimiter() == Delimiter::Brace => {
                out.push_str(if out.ends_with(' ') { "{" } else { " {" });
                newline(depth + 1, out);
                write(g.stream(), depth + 1, out);
                newline(depth, out);
                out.push('}');
                newline(depth, out);
            }
            TokenTree::Group(g) => {
                let (open, close) = match g.delimiter() {
                    Delimiter::Parenthesis => ("(", ")"),
                    Delimiter::Bracket => ("[", "]"),
                    _ => ("", ""),
                };
                out.push_str(open);
                let mut inner = String::new();
                write(g.stream(), depth, &mut inner);
                out.push_str(inner.trim());
                out.push_str(close);
            }
            TokenTree::Punct(p) => {
                let c = p.as_char();
                let alone = p.spacing() == proc_macro2::Spacing::Alone;
                if matches!(c, '=' | '-') && !out.ends_with([' ', '=', '!', '<', '>', '-', '+']) {
                    out.push(' ');
                }
                let path_sep = c == ':' && out.ends_with(':');
                if c == ':'
                    && !alone
                    && [" impl", " as", " mut", " for", " dyn"]
                        .iter()
                        .any(|k| out.ends_with(k))
                {
                    out.push(' ');
                }
                out.push(c);
                if c == ';' {
                    newline(depth, out);
                } else if alone && !path_sep && !matches!(c, '&' | '!' | '#' | '\'' | '<' | '.') {
                    out.push(' ');
                }
            }
            other => {
                if !out.is_empty()
                    && !out.ends_with([' ', '(', '[', '\n', '&', '#', '\'', '!', ':', '<', '.'])
                {
                    out.push(' ');
                }
                out.push_str(&other.to_string());
            }
        }
    }
}
