package kstreams.bench;

import java.io.BufferedWriter;
import java.io.IOException;
import java.io.OutputStreamWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.atomic.AtomicReference;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.Deserializer;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.StringSerializer;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.EmitStrategy;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.KGroupedStream;
import org.apache.kafka.streams.kstream.KTable;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.SessionWindows;
import org.apache.kafka.streams.kstream.SlidingWindows;
import org.apache.kafka.streams.kstream.TimeWindows;
import org.apache.kafka.streams.kstream.Windowed;
import org.apache.kafka.streams.kstream.WindowedSerdes;
import org.apache.kafka.streams.state.SessionStore;
import org.apache.kafka.streams.state.WindowStore;
import org.apache.kafka.common.utils.Bytes;

/**
 * Java Kafka Streams' windowed count over a file: the reference the kstreams example
 * {@code windowed_count} is compared with (issue 14, the differential test).
 *
 * <pre>
 * java -cp 'bench/java/target/*:bench/java/target/lib/*' kstreams.bench.WindowedCount \
 *     --input FILE --window SPEC --grace-ms G [--partitions N] [--emit final|update] --bootstrap HOST:PORT
 *     [--retention-ms R]
 * </pre>
 *
 * The same command line as the example plus {@code --bootstrap}. FILE: lines {@code <timestamp ms>\t<key>}
 * (UTF-8, blank lines ignored); SPEC: {@code tumbling:SIZE_MS}, {@code hopping:SIZE_MS:ADVANCE_MS},
 * {@code sliding:DIFF_MS} or {@code session:GAP_MS}.
 *
 * <p>It creates a fresh input topic of N partitions (default 4) and an output topic, produces the
 * file's records in file order (String key, that timestamp, the line number as value; the Java
 * client's default partitioner), runs {@code groupByKey().windowedBy(..).count()} (emit on window
 * close, or on update with the record cache off) to the output topic with the windowed serdes, stops
 * once its committed input offsets reach the input's end offsets, reads the output to its end and
 * prints one line per result on stdout: {@code <key>\t<window start>\t<window end>\t<count>} (a
 * session's end is its last record's timestamp). With {@code final}: every result emitted, sorted;
 * with {@code update}: the last value emitted per window, windows whose last value is a tombstone
 * (a merged-away session) left out. Lines are sorted by key (UTF-8 bytes), start, end, count.
 * Logs go to stderr (warnings and errors only); its topics are deleted at the end.
 *
 * <p>{@code --retention-ms}: the window (session) store's retention instead of Kafka Streams' default
 * (size + grace; gap + grace). Emit on close reads closed windows from the store, which drops
 * whatever is older than stream time - retention: a jump of stream time that closes windows
 * beyond the retention at once skips them (KAFKA-12960). kstreams emits those windows (a
 * documented difference), so the differential test gives Java a retention no jump reaches.
 *
 * <p>Determinism: the record cache is off and
 * {@code __emit.interval.ms.kstreams.windowed.aggregation__} is 0 (Kafka Streams otherwise checks
 * for closed windows at most once a second of wall-clock time, so what is emitted would depend on
 * timing).
 */
public final class WindowedCount {

    private WindowedCount() {}

    /** Kafka Streams' internal setting: how often (wall clock) emit-on-close looks for closed windows. */
    static final String EMIT_INTERVAL = "__emit.interval.ms.kstreams.windowed.aggregation__";

    /** One input line. */
    record Line(long timestamp, String key) {}

    /** One output result. */
    record Result(String key, long start, long end, Long count) {}

    /** A parsed window spec. */
    record Spec(String kind, long a, long b) {}

    public static void main(String[] argv) throws Exception {
        int rc;
        try {
            rc = run(argv);
        } catch (Main.Fail f) {
            System.err.println("error: " + f.getMessage());
            rc = 2;
        }
        System.out.flush();
        System.exit(rc);
    }

    static int run(String[] argv) throws Exception {
        // Main.Args reads "--name value" pairs after a mode word.
        String[] withMode = new String[argv.length + 1];
        withMode[0] = "windowed-count";
        System.arraycopy(argv, 0, withMode, 1, argv.length);
        Main.Args a = new Main.Args(withMode);
        Path input = Path.of(a.req("input"));
        Spec spec = parseSpec(a.req("window"));
        long grace = parseNonNegative("--grace-ms", a.req("grace-ms"));
        int partitions = (int) parseNonNegative("--partitions", a.opt("partitions", "4"));
        if (partitions < 1) Main.die("--partitions must be at least 1");
        String emit = a.opt("emit", "final");
        if (!emit.equals("final") && !emit.equals("update")) Main.die("--emit must be final or update, not " + emit);
        String bootstrap = a.req("bootstrap");
        String retentionArg = a.opt("retention-ms", "");
        Long retention = retentionArg.isEmpty() ? null : parsePositive("--retention-ms", retentionArg);
        List<Line> lines = readLines(input);

        String run = "windowed-count-java-" + ProcessHandle.current().pid() + "-" + System.currentTimeMillis();
        String inTopic = run + "-input";
        String outTopic = run + "-output";
        Path stateDir = Files.createTempDirectory("kstreams-windowed-count-java-");
        try (Admin admin = Main.admin(bootstrap)) {
            Main.create(admin, inTopic, partitions, false);
            Main.create(admin, outTopic, partitions, false);
            try {
                produce(bootstrap, inTopic, lines);
                Properties config = config(run, bootstrap, stateDir);
                KafkaStreams streams = new KafkaStreams(
                    topology(inTopic, outTopic, spec, grace, emit, retention, config).build(config), config);
                AtomicReference<Throwable> failed = new AtomicReference<>();
                streams.setUncaughtExceptionHandler(e -> {
                    failed.compareAndSet(null, e);
                    return org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler
                        .StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
                });
                // Ends the wait for the committed offsets early if the app stops.
                java.util.concurrent.BlockingQueue<String> stopped = new java.util.concurrent.LinkedBlockingQueue<>();
                streams.setStateListener((now, before) -> {
                    if (now == KafkaStreams.State.ERROR || now == KafkaStreams.State.PENDING_SHUTDOWN
                            || now == KafkaStreams.State.NOT_RUNNING) {
                        stopped.add("stopped");
                    }
                });
                streams.start();
                try {
                    waitProcessed(admin, run, inTopic, stopped, failed);
                } finally {
                    streams.close(Duration.ofSeconds(30));
                    streams.cleanUp();
                }
                List<Result> results = readOutput(bootstrap, outTopic, spec);
                print(results, emit);
            } finally {
                try {
                    admin.deleteTopics(List.of(inTopic, outTopic)).all().get();
                } catch (Exception e) {
                    System.err.println("windowed-count: could not delete the run's topics: " + e);
                }
                deleteTree(stateDir);
            }
        }
        return 0;
    }

    static Spec parseSpec(String s) {
        String[] p = s.split(":", -1);
        String usage = "--window must be tumbling:SIZE_MS, hopping:SIZE_MS:ADVANCE_MS, sliding:DIFF_MS or "
            + "session:GAP_MS, not `" + s + "`";
        switch (p[0]) {
            case "tumbling", "sliding", "session" -> {
                if (p.length != 2) Main.die(usage);
                long v = parsePositive("--window", p[1]);
                return new Spec(p[0], v, v);
            }
            case "hopping" -> {
                if (p.length != 3) Main.die(usage);
                long size = parsePositive("--window", p[1]);
                long advance = parsePositive("--window", p[2]);
                if (advance > size) Main.die("--window: the advance (" + advance + ") exceeds the size (" + size + ")");
                return new Spec(p[0], size, advance);
            }
            default -> {
                Main.die(usage);
                return null;
            }
        }
    }

    static long parseNonNegative(String what, String v) {
        try {
            long x = Long.parseLong(v);
            if (x >= 0) return x;
        } catch (NumberFormatException e) {
            // below
        }
        Main.die(what + ": `" + v + "` is not a non-negative integer");
        return 0;
    }

    static long parsePositive(String what, String v) {
        long x = parseNonNegative(what, v);
        if (x == 0) Main.die(what + ": a duration must be positive, not 0");
        return x;
    }

    /** The file's records; a line that is not {@code <timestamp>\t<key>} is an error naming its number. */
    static List<Line> readLines(Path input) throws IOException {
        List<Line> out = new ArrayList<>();
        List<String> text;
        try {
            text = Files.readAllLines(input, StandardCharsets.UTF_8);
        } catch (IOException e) {
            Main.die("cannot read " + input + ": " + e.getMessage());
            return out;
        }
        for (int i = 0; i < text.size(); i++) {
            String l = text.get(i);
            if (l.endsWith("\r")) l = l.substring(0, l.length() - 1);
            if (l.isBlank()) continue;
            int tab = l.indexOf('\t');
            if (tab < 0) Main.die(input + " line " + (i + 1) + ": expected `<timestamp ms>\\t<key>`, got `" + l + "`");
            long ts;
            try {
                ts = Long.parseLong(l.substring(0, tab));
            } catch (NumberFormatException e) {
                Main.die(input + " line " + (i + 1) + ": `" + l.substring(0, tab) + "` is not a timestamp in ms");
                return out;
            }
            if (ts < 0) Main.die(input + " line " + (i + 1) + ": negative timestamp " + ts);
            out.add(new Line(ts, l.substring(tab + 1)));
        }
        return out;
    }

    static void produce(String bootstrap, String topic, List<Line> lines) {
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ProducerConfig.ACKS_CONFIG, "all");
        p.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
        p.put(ProducerConfig.LINGER_MS_CONFIG, "5");
        AtomicReference<Exception> failure = new AtomicReference<>();
        try (KafkaProducer<String, String> producer =
                 new KafkaProducer<>(p, new StringSerializer(), new StringSerializer())) {
            for (int i = 0; i < lines.size(); i++) {
                Line l = lines.get(i);
                // Partition null: the default partitioner (murmur2 of the key bytes).
                producer.send(new ProducerRecord<>(topic, null, l.timestamp(), l.key(), Integer.toString(i)),
                    (md, e) -> { if (e != null) failure.compareAndSet(null, e); });
            }
            producer.flush();
        }
        if (failure.get() != null) Main.die("producing to " + topic + " failed: " + failure.get());
    }

    static StreamsBuilder topology(String in, String out, Spec spec, long grace, String emit, Long retention,
                                   Properties config) {
        // Built with the app's config (the default constructor reads an empty one, and warns).
        StreamsBuilder b = new StreamsBuilder(new org.apache.kafka.streams.TopologyConfig(new StreamsConfig(config)));
        KGroupedStream<String, String> grouped = b.stream(in, Consumed.with(Serdes.String(), Serdes.String()))
            .groupByKey(Grouped.with(Serdes.String(), Serdes.String()));
        EmitStrategy strategy = emit.equals("final") ? EmitStrategy.onWindowClose() : EmitStrategy.onWindowUpdate();
        Duration g = Duration.ofMillis(grace);
        KTable<Windowed<String>, Long> counts;
        Serde<Windowed<String>> keySerde;
        switch (spec.kind()) {
            case "tumbling" -> {
                counts = grouped.windowedBy(TimeWindows.ofSizeAndGrace(Duration.ofMillis(spec.a()), g))
                    .emitStrategy(strategy).count(windowStore(retention));
                keySerde = WindowedSerdes.timeWindowedSerdeFrom(String.class, spec.a());
            }
            case "hopping" -> {
                counts = grouped.windowedBy(TimeWindows.ofSizeAndGrace(Duration.ofMillis(spec.a()), g)
                        .advanceBy(Duration.ofMillis(spec.b())))
                    .emitStrategy(strategy).count(windowStore(retention));
                keySerde = WindowedSerdes.timeWindowedSerdeFrom(String.class, spec.a());
            }
            case "sliding" -> {
                counts = grouped.windowedBy(SlidingWindows.ofTimeDifferenceAndGrace(Duration.ofMillis(spec.a()), g))
                    .emitStrategy(strategy).count(windowStore(retention));
                keySerde = WindowedSerdes.timeWindowedSerdeFrom(String.class, spec.a());
            }
            case "session" -> {
                counts = grouped.windowedBy(SessionWindows.ofInactivityGapAndGrace(Duration.ofMillis(spec.a()), g))
                    .emitStrategy(strategy).count(sessionStore(retention));
                keySerde = WindowedSerdes.sessionWindowedSerdeFrom(String.class);
            }
            default -> throw new IllegalStateException(spec.kind());
        }
        counts.toStream().to(out, Produced.with(keySerde, Serdes.Long()));
        return b;
    }

    /** The count's window store: Kafka Streams' default, or with the given retention. */
    static Materialized<String, Long, WindowStore<Bytes, byte[]>> windowStore(Long retention) {
        Materialized<String, Long, WindowStore<Bytes, byte[]>> m = Materialized.with(Serdes.String(), Serdes.Long());
        return retention == null ? m : m.withRetention(Duration.ofMillis(retention));
    }

    /** The count's session store: Kafka Streams' default, or with the given retention. */
    static Materialized<String, Long, SessionStore<Bytes, byte[]>> sessionStore(Long retention) {
        Materialized<String, Long, SessionStore<Bytes, byte[]>> m = Materialized.with(Serdes.String(), Serdes.Long());
        return retention == null ? m : m.withRetention(Duration.ofMillis(retention));
    }

    static Properties config(String appId, String bootstrap, Path stateDir) {
        Properties p = new Properties();
        p.put(StreamsConfig.APPLICATION_ID_CONFIG, appId);
        p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(StreamsConfig.STATE_DIR_CONFIG, stateDir.toString());
        p.put(StreamsConfig.REPLICATION_FACTOR_CONFIG, 1);
        p.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, 0L);
        p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 100L);
        p.put(EMIT_INTERVAL, 0L);
        // Kafka Streams 4.4 warns on every start without it (the default changes in 5.0).
        p.put("processing.exception.handler.global.enabled", true);
        p.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");
        return p;
    }

    /** Until the app's committed offsets reach the input's end offsets (an error after 120 s or if it stopped). */
    static void waitProcessed(Admin admin, String group, String topic,
                              java.util.concurrent.BlockingQueue<String> stopped,
                              AtomicReference<Throwable> failed) throws Exception {
        String res = Main.waitCommitted(admin, group, topic, true, 120, stopped);
        if (failed.get() != null) Main.die("Kafka Streams failed: " + failed.get());
        if (!res.contains("\"caught_up\":true")) Main.die("the app did not process its input: " + res);
    }

    static List<Result> readOutput(String bootstrap, String topic, Spec spec) {
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        p.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
        Deserializer<Windowed<String>> keys = spec.kind().equals("session")
            ? WindowedSerdes.sessionWindowedSerdeFrom(String.class).deserializer()
            : WindowedSerdes.timeWindowedSerdeFrom(String.class, spec.a()).deserializer();
        Deserializer<Long> values = Serdes.Long().deserializer();
        List<Result> out = new ArrayList<>();
        try (KafkaConsumer<byte[], byte[]> c =
                 new KafkaConsumer<>(p, new ByteArrayDeserializer(), new ByteArrayDeserializer())) {
            List<TopicPartition> tps = new ArrayList<>();
            c.partitionsFor(topic).forEach(pi -> tps.add(new TopicPartition(topic, pi.partition())));
            tps.sort(Comparator.comparingInt(TopicPartition::partition));
            c.assign(tps);
            c.seekToBeginning(tps);
            Map<TopicPartition, Long> end = c.endOffsets(tps);
            Set<TopicPartition> pending = new HashSet<>();
            for (TopicPartition tp : tps) if (end.get(tp) > 0) pending.add(tp);
            long deadline = System.nanoTime() + 60_000_000_000L;
            while (!pending.isEmpty()) {
                if (System.nanoTime() > deadline) Main.die("could not read " + topic + " to its end " + end);
                for (ConsumerRecord<byte[], byte[]> r : c.poll(Duration.ofMillis(200))) {
                    Windowed<String> k = keys.deserialize(topic, r.key());
                    out.add(new Result(k.key(), k.window().start(), k.window().end(),
                        r.value() == null ? null : values.deserialize(topic, r.value())));
                }
                pending.removeIf(tp -> c.position(tp) >= end.get(tp));
            }
        }
        return out;
    }

    /** Prints the results in the example's format (see the class docs). */
    static void print(List<Result> results, String emit) throws IOException {
        List<Result> shown;
        if (emit.equals("final")) {
            shown = new ArrayList<>(results);
        } else {
            Map<List<Object>, Result> last = new LinkedHashMap<>();
            for (Result r : results) last.put(List.of(r.key(), r.start(), r.end()), r);
            shown = new ArrayList<>();
            for (Result r : last.values()) if (r.count() != null) shown.add(r);
        }
        shown.removeIf(r -> r.count() == null);
        shown.sort(Comparator
            .comparing((Result r) -> r.key().getBytes(StandardCharsets.UTF_8), Arrays::compareUnsigned)
            .thenComparingLong(Result::start)
            .thenComparingLong(Result::end)
            .thenComparingLong(Result::count));
        BufferedWriter w = new BufferedWriter(new OutputStreamWriter(System.out, StandardCharsets.UTF_8));
        for (Result r : shown) {
            w.write(r.key() + "\t" + r.start() + "\t" + r.end() + "\t" + r.count() + "\n");
        }
        w.flush();
    }

    static void deleteTree(Path dir) {
        try (var walk = Files.walk(dir)) {
            walk.sorted(Comparator.reverseOrder()).forEach(f -> f.toFile().delete());
        } catch (IOException e) {
            // a temp dir left behind
        }
    }
}
