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
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;
import java.util.concurrent.atomic.AtomicReference;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.JoinWindows;
import org.apache.kafka.streams.kstream.Joined;
import org.apache.kafka.streams.kstream.KStream;
import org.apache.kafka.streams.kstream.KTable;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.StreamJoined;
import org.apache.kafka.streams.processor.api.FixedKeyProcessor;
import org.apache.kafka.streams.processor.api.FixedKeyProcessorContext;
import org.apache.kafka.streams.processor.api.FixedKeyRecord;
import org.apache.kafka.streams.state.Stores;

/**
 * Java Kafka Streams' joins over two files: the reference the kstreams example {@code join} is
 * compared with (issue 15, the differential test {@code tests/tests/join_differential.rs}).
 *
 * <pre>
 * java -cp 'bench/java/target/*:bench/java/target/lib/*' kstreams.bench.JoinApp \
 *     --join KIND --left FILE --right FILE [--partitions N] [--grace-ms G] --bootstrap HOST:PORT
 * </pre>
 *
 * The example's command line plus {@code --bootstrap}. FILE: lines
 * {@code <timestamp ms>\t<key>\t<value>} (UTF-8, blank lines ignored; the value is the rest of the
 * line). KIND: {@code stream-table} (inner, against a versioned table:
 * {@code Stores.persistentVersionedKeyValueStore} with a history covering the whole input, the
 * stream side's grace {@code Joined.withGracePeriod(G)}), {@code left-stream-table} (the same,
 * {@code leftJoin}), {@code stream-stream:WINDOW_MS} and {@code left-stream-stream:WINDOW_MS}
 * ({@code join} / {@code leftJoin} with {@code JoinWindows.ofTimeDifferenceAndGrace(WINDOW, G)}).
 *
 * <p>It creates fresh left, right and output topics of N partitions (default 4), produces both files'
 * records in file order (String keys and values, those timestamps, the Java client's default
 * partitioner; in the right file of a table kind an empty value is produced as null: a tombstone),
 * both before the app starts, runs the join to the output topic, stops once its committed offsets
 * reach both inputs' end offsets, reads the output to its end and prints one line per result on
 * stdout, grouped by key (keys sorted by their UTF-8 bytes), each key's results in output offset
 * order: for the table kinds {@code <key>\t<left ts>\t<left value>\t<right value, or ->}, for the
 * stream-stream kinds {@code <key>\t<left ts>\t<left value>\t<right ts>\t<right value>} ({@code -\t-}
 * for an unmatched left record). The timestamps printed are the records' own: each side's value
 * is prefixed with its record's timestamp before the join ({@code processValues}), and the joiner
 * writes the line. Logs go to stderr (warnings and errors only); its topics are deleted at the end.
 *
 * <p>Determinism: {@code __emit.interval.ms.kstreams.outer.join.spurious.results.fix__} is 0 (Kafka
 * Streams otherwise looks for the left join's closed windows at most once a second of wall-clock
 * time, so what is emitted would depend on timing), and {@code max.task.idle.ms} is 2 s (both inputs
 * are complete before the start, so a task never processes one ahead of the other's records).
 */
public final class JoinApp {

    private JoinApp() {}

    /** Kafka Streams' internal setting: how often (wall clock) a left/outer join looks for closed windows. */
    static final String OUTER_EMIT_INTERVAL = "__emit.interval.ms.kstreams.outer.join.spurious.results.fix__";

    /** What a missing side prints. */
    static final String NONE = "-";

    /** One input line. */
    record Line(long timestamp, String key, String value) {}

    /** A parsed --join. */
    record Kind(boolean table, boolean left, long windowMs) {}

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
        withMode[0] = "join";
        System.arraycopy(argv, 0, withMode, 1, argv.length);
        Main.Args a = new Main.Args(withMode);
        Kind kind = parseKind(a.req("join"));
        Path leftFile = Path.of(a.req("left"));
        Path rightFile = Path.of(a.req("right"));
        long grace = WindowedCount.parseNonNegative("--grace-ms", a.opt("grace-ms", "0"));
        int partitions = (int) WindowedCount.parseNonNegative("--partitions", a.opt("partitions", "4"));
        if (partitions < 1) Main.die("--partitions must be at least 1");
        String bootstrap = a.req("bootstrap");
        List<Line> left = readLines(leftFile);
        List<Line> right = readLines(rightFile);

        String run = "join-java-" + ProcessHandle.current().pid() + "-" + System.currentTimeMillis();
        String leftTopic = run + "-left";
        String rightTopic = run + "-right";
        String outTopic = run + "-output";
        Path stateDir = Files.createTempDirectory("kstreams-join-java-");
        try (Admin admin = Main.admin(bootstrap)) {
            Main.create(admin, leftTopic, partitions, false);
            Main.create(admin, rightTopic, partitions, false);
            Main.create(admin, outTopic, partitions, false);
            try {
                produce(bootstrap, leftTopic, left, false);
                produce(bootstrap, rightTopic, right, kind.table());
                Properties config = config(run, bootstrap, stateDir);
                KafkaStreams streams = new KafkaStreams(
                    topology(leftTopic, rightTopic, outTopic, kind, grace, history(left, right, grace), config)
                        .build(config),
                    config);
                AtomicReference<Throwable> failed = new AtomicReference<>();
                streams.setUncaughtExceptionHandler(e -> {
                    failed.compareAndSet(null, e);
                    return org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler
                        .StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
                });
                java.util.concurrent.BlockingQueue<String> stopped = new java.util.concurrent.LinkedBlockingQueue<>();
                streams.setStateListener((now, before) -> {
                    if (now == KafkaStreams.State.ERROR || now == KafkaStreams.State.PENDING_SHUTDOWN
                            || now == KafkaStreams.State.NOT_RUNNING) {
                        stopped.add("stopped");
                    }
                });
                streams.start();
                try {
                    waitProcessed(admin, run, leftTopic, stopped, failed);
                    waitProcessed(admin, run, rightTopic, stopped, failed);
                } finally {
                    streams.close(Duration.ofSeconds(30));
                    streams.cleanUp();
                }
                print(readOutput(bootstrap, outTopic));
            } finally {
                try {
                    admin.deleteTopics(List.of(leftTopic, rightTopic, outTopic)).all().get();
                } catch (Exception e) {
                    System.err.println("join: could not delete the run's topics: " + e);
                }
                WindowedCount.deleteTree(stateDir);
            }
        }
        return 0;
    }

    static Kind parseKind(String s) {
        String usage = "--join must be stream-table, left-stream-table, stream-stream:WINDOW_MS or "
            + "left-stream-stream:WINDOW_MS, not `" + s + "`";
        switch (s) {
            case "stream-table" -> {
                return new Kind(true, false, 0);
            }
            case "left-stream-table" -> {
                return new Kind(true, true, 0);
            }
            default -> {
                String[] p = s.split(":", -1);
                if (p.length != 2) Main.die(usage);
                long w = WindowedCount.parseNonNegative("--join", p[1]);
                switch (p[0]) {
                    case "stream-stream" -> {
                        return new Kind(false, false, w);
                    }
                    case "left-stream-stream" -> {
                        return new Kind(false, true, w);
                    }
                    default -> Main.die(usage);
                }
                return null;
            }
        }
    }

    /** The file's records; a bad line is an error naming the file and its number. */
    static List<Line> readLines(Path input) {
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
            String[] f = l.split("\t", 3);
            if (f.length < 3) {
                Main.die(input + " line " + (i + 1) + ": expected `<timestamp ms>\\t<key>\\t<value>`, got `" + l + "`");
            }
            long ts;
            try {
                ts = Long.parseLong(f[0]);
            } catch (NumberFormatException e) {
                Main.die(input + " line " + (i + 1) + ": `" + f[0] + "` is not a timestamp in ms");
                return out;
            }
            if (ts < 0) Main.die(input + " line " + (i + 1) + ": negative timestamp " + ts);
            // As the kstreams example (librdkafka cannot send a timestamp of 0).
            if (ts == 0) Main.die(input + " line " + (i + 1) + ": timestamp 0 cannot be produced");
            out.add(new Line(ts, f[1], f[2]));
        }
        return out;
    }

    /** The versioned table's history: the whole input's time span, and at least the grace and a day. */
    static Duration history(List<Line> left, List<Line> right, long grace) {
        long min = Long.MAX_VALUE;
        long max = Long.MIN_VALUE;
        for (List<Line> ls : List.of(left, right)) {
            for (Line l : ls) {
                min = Math.min(min, l.timestamp());
                max = Math.max(max, l.timestamp());
            }
        }
        long span = max >= min ? max - min : 0;
        return Duration.ofMillis(Math.max(Math.max(span + 1, grace), 86_400_000L));
    }

    static void produce(String bootstrap, String topic, List<Line> lines, boolean emptyIsTombstone) {
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ProducerConfig.ACKS_CONFIG, "all");
        p.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
        p.put(ProducerConfig.LINGER_MS_CONFIG, "5");
        AtomicReference<Exception> failure = new AtomicReference<>();
        try (KafkaProducer<String, String> producer =
                 new KafkaProducer<>(p, new StringSerializer(), new StringSerializer())) {
            for (Line l : lines) {
                String value = emptyIsTombstone && l.value().isEmpty() ? null : l.value();
                // Partition null: the default partitioner (murmur2 of the key bytes).
                producer.send(new ProducerRecord<>(topic, null, l.timestamp(), l.key(), value),
                    (md, e) -> { if (e != null) failure.compareAndSet(null, e); });
            }
            producer.flush();
        }
        if (failure.get() != null) Main.die("producing to " + topic + " failed: " + failure.get());
    }

    /** Prefixes each value with its record's timestamp and a tab: what the joiner prints. */
    static final class WithTimestamp implements FixedKeyProcessor<String, String, String> {
        private FixedKeyProcessorContext<String, String> context;

        @Override
        public void init(FixedKeyProcessorContext<String, String> context) {
            this.context = context;
        }

        @Override
        public void process(FixedKeyRecord<String, String> r) {
            context.forward(r.withValue(r.timestamp() + "\t" + r.value()));
        }
    }

    static StreamsBuilder topology(String leftTopic, String rightTopic, String out, Kind kind, long grace,
                                   Duration history, Properties config) {
        // Built with the app's config (the default constructor reads an empty one, and warns).
        StreamsBuilder b = new StreamsBuilder(new org.apache.kafka.streams.TopologyConfig(new StreamsConfig(config)));
        KStream<String, String> left = b.stream(leftTopic, Consumed.with(Serdes.String(), Serdes.String()))
            .processValues(WithTimestamp::new);
        KStream<String, String> joined;
        if (kind.table()) {
            KTable<String, String> table = b.table(rightTopic, Consumed.with(Serdes.String(), Serdes.String()),
                Materialized.<String, String>as(Stores.persistentVersionedKeyValueStore("join-right", history))
                    .withKeySerde(Serdes.String())
                    .withValueSerde(Serdes.String()));
            Joined<String, String, String> joinedWith = Joined.with(Serdes.String(), Serdes.String(), Serdes.String())
                .withGracePeriod(Duration.ofMillis(grace));
            joined = kind.left()
                ? left.leftJoin(table, (l, r) -> l + "\t" + (r == null ? NONE : r), joinedWith)
                : left.join(table, (l, r) -> l + "\t" + r, joinedWith);
        } else {
            KStream<String, String> right = b.stream(rightTopic, Consumed.with(Serdes.String(), Serdes.String()))
                .processValues(WithTimestamp::new);
            JoinWindows windows = JoinWindows.ofTimeDifferenceAndGrace(
                Duration.ofMillis(kind.windowMs()), Duration.ofMillis(grace));
            StreamJoined<String, String, String> with =
                StreamJoined.with(Serdes.String(), Serdes.String(), Serdes.String());
            joined = kind.left()
                ? left.leftJoin(right, (l, r) -> l + "\t" + (r == null ? NONE + "\t" + NONE : r), windows, with)
                : left.join(right, (l, r) -> l + "\t" + r, windows, with);
        }
        joined.to(out, Produced.with(Serdes.String(), Serdes.String()));
        return b;
    }

    static Properties config(String appId, String bootstrap, Path stateDir) {
        Properties p = WindowedCount.config(appId, bootstrap, stateDir);
        p.remove(WindowedCount.EMIT_INTERVAL);
        p.put(OUTER_EMIT_INTERVAL, 0L);
        p.put(StreamsConfig.MAX_TASK_IDLE_MS_CONFIG, 2_000L);
        return p;
    }

    /** Until the app's committed offsets reach the topic's end offsets (an error after 120 s or if it stopped). */
    static void waitProcessed(Admin admin, String group, String topic,
                              java.util.concurrent.BlockingQueue<String> stopped,
                              AtomicReference<Throwable> failed) throws Exception {
        WindowedCount.waitProcessed(admin, group, topic, stopped, failed);
    }

    /** Every output record, partition by partition in offset order: (key, the rest of the line). */
    static List<String[]> readOutput(String bootstrap, String topic) {
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        p.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
        List<String[]> out = new ArrayList<>();
        try (KafkaConsumer<String, String> c =
                 new KafkaConsumer<>(p, new StringDeserializer(), new StringDeserializer())) {
            List<TopicPartition> tps = new ArrayList<>();
            c.partitionsFor(topic).forEach(pi -> tps.add(new TopicPartition(topic, pi.partition())));
            tps.sort(Comparator.comparingInt(TopicPartition::partition));
            for (TopicPartition tp : tps) {
                // One partition at a time, so that the records come in offset order.
                c.assign(List.of(tp));
                c.seekToBeginning(List.of(tp));
                long end = c.endOffsets(List.of(tp)).get(tp);
                long deadline = System.nanoTime() + 60_000_000_000L;
                while (c.position(tp) < end) {
                    if (System.nanoTime() > deadline) Main.die("could not read " + tp + " to its end " + end);
                    for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(200))) {
                        out.add(new String[] {r.key(), r.value()});
                    }
                }
            }
        }
        return out;
    }

    /** Prints the results in the example's format (see the class docs). */
    static void print(List<String[]> results) throws IOException {
        Map<byte[], List<String>> byKey = new TreeMap<>(Arrays::compareUnsigned);
        for (String[] r : results) {
            byKey.computeIfAbsent(r[0].getBytes(StandardCharsets.UTF_8), k -> new ArrayList<>()).add(r[1]);
        }
        BufferedWriter w = new BufferedWriter(new OutputStreamWriter(System.out, StandardCharsets.UTF_8));
        for (Map.Entry<byte[], List<String>> e : byKey.entrySet()) {
            String key = new String(e.getKey(), StandardCharsets.UTF_8);
            for (String rest : e.getValue()) w.write(key + "\t" + rest + "\n");
        }
        w.flush();
    }
}
