//! The process id: what makes this instance's default `transactional.id` its own.
//!
//! Owns: `<state dir>/<application id>/kstreams.process-id`, created once with 128 random bits
//! (as Kafka Streams keeps a UUID in its state directory) and read on every start after. Two
//! replicas whose state directories have the same path (on two hosts, or the same relative path
//! from two working directories) get different ids; one instance keeps its id across restarts,
//! so that its new producer fences its old one. May not touch: the tasks' state under the same
//! directory (that is `store`), or the producer (`sink`).

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The file's name, in `<state dir>/<application id>/`.
pub(crate) const FILE_NAME: &str = "kstreams.process-id";

/// Hex digits of a process id (128 bits).
const DIGITS: usize = 32;

/// The path of the process-id file of `application_id` under `state_dir`.
pub(crate) fn path(state_dir: &Path, application_id: &str) -> PathBuf {
    state_dir.join(application_id).join(FILE_NAME)
}

/// This instance's process id (32 lowercase hex digits): read from the state directory, or
/// created there the first time (written to a temporary file, synced, renamed into place).
pub(crate) fn process_id(state_dir: &Path, application_id: &str) -> Result<String> {
    let file = path(state_dir, application_id);
    match std::fs::read_to_string(&file) {
        Ok(text) => return parse(&file, &text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(Error::Io {
                context: format!("reading the process id {}", file.display()),
                source: e,
            });
        }
    }
    let io = |what: &str, p: &Path| {
        let context = format!("{what} {}", p.display());
        move |source| Error::Io { context, source }
    };
    let dir = state_dir.join(application_id);
    std::fs::create_dir_all(&dir).map_err(io("creating the state directory", &dir))?;
    let id = format!("{:032x}", rand::random::<u128>());
    let tmp = dir.join(format!("{FILE_NAME}.tmp-{}", std::process::id()));
    let written = std::fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(format!("{id}\n").as_bytes())?;
        f.sync_all()
    });
    written.map_err(io("writing the process id", &tmp))?;
    std::fs::rename(&tmp, &file).map_err(io("creating the process id", &file))?;
    tracing::info!(process_id = %id, file = %file.display(), "new process id");
    Ok(id)
}

fn parse(file: &Path, text: &str) -> Result<String> {
    let id = text.trim();
    if id.len() == DIGITS && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(id.to_ascii_lowercase())
    } else {
        Err(Error::Config(format!(
            "{} does not hold a process id ({DIGITS} hex digits) but {:?}: delete the file to \
             give this instance a new one (under exactly-once, its old transactional id is then \
             not fenced: a transaction it left open blocks readers for up to 10 s)",
            file.display(),
            id.chars().take(64).collect::<String>()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_then_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = process_id(dir.path(), "app").expect("created");
        assert_eq!(first.len(), DIGITS);
        assert!(first.bytes().all(|b| b.is_ascii_hexdigit()), "{first}");
        assert!(path(dir.path(), "app").is_file());
        assert_eq!(
            process_id(dir.path(), "app").expect("read"),
            first,
            "stable"
        );
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path().join("app"))
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, [FILE_NAME]);
    }

    #[test]
    fn two_state_directories_with_the_same_path_string_get_two_ids() {
        // The same relative path seen from two working directories is two directories.
        let (a, b) = (
            tempfile::tempdir().expect("a"),
            tempfile::tempdir().expect("b"),
        );
        let rel = Path::new("state");
        let id_a = process_id(&a.path().join(rel), "app").expect("a");
        let id_b = process_id(&b.path().join(rel), "app").expect("b");
        assert_ne!(id_a, id_b);
        // And per application: another app in the same state directory has its own.
        assert_ne!(
            process_id(&a.path().join(rel), "other").expect("other"),
            id_a
        );
    }

    #[test]
    fn a_damaged_file_is_a_clear_error_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = path(dir.path(), "app");
        std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
        std::fs::write(&file, "not an id").expect("write");
        let e = process_id(dir.path(), "app")
            .expect_err("damaged")
            .to_string();
        assert!(e.contains(&file.display().to_string()), "{e}");
        assert!(e.contains("not an id"), "{e}");
    }
}
