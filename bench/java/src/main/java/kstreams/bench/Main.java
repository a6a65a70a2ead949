package kstreams.bench;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.BitSet;
import java.util.Collection;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.ListOffsetsResult;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.KafkaFuture;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.errors.UnknownTopicOrPartitionException;
import org.apache.kafka.common.record.TimestampType;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.StringSerializer;
import org.apache.kafka.common.utils.Utils;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.KStream;
import org.apache.kafka.streams.kstream.Produced;

/**
 * The Java side of the kstreams side-by-side benchmark (issue 6).
 *
 * <pre>
 * produce      --bootstrap B --topic T --records N --keys K --partitions P [--value-bytes 100]
 *              [--timestamp-base MS --span-ms S]
 * produce      --table --bootstrap B --topic T --keys K --partitions P --timestamp MS:
 *              the enrichment's table, one record per key (see below)
 * streams      --bootstrap B --app-id A --input T --output O --topology map|count|windowed|enrich
 *              --cache on|off --state-dir D [--commit-interval-ms default|MS] [--table T]
 * passthrough  --bootstrap B --group G --input T --output O [--commit-interval-ms default|MS]:
 *              the Java client's ceiling, a plain KafkaConsumer -> KafkaProducer loop (see
 *              {@link #passthrough})
 * create-topic --bootstrap B --topic T --partitions P [--log-append-time]
 * offsets      --bootstrap B --group G --topic T [--wait] [--timeout-s S]
 * verify       --bootstrap B --topic O --mode map|identity|enriched|count|windowed --records N --keys K
 *              [--value-bytes 100] [--timestamp-base MS --span-ms S]
 *              [--delete-topics T1,T2,...] [--delete-prefix PFX]
 * serve        one JVM for all of the above but streams: a command line per stdin line
 * watch        --bootstrap B --group G --input T --topic O [--create-output --partitions P]
 *              [--timeout-s S] + the verify options: one JVM per benchmark run. Creates
 *              the output topic (LogAppendTime), prints {"ready":true}, waits until G's
 *              committed offsets reach T's end offsets (prints the offsets line), then
 *              reads one line from stdin (the system has been stopped) and verifies O.
 * </pre>
 *
 * <h2>The input (what every system reads)</h2>
 * Record i (0 &lt;= i &lt; N) has key {@code "key-" + (i % K)} and a value of
 * exactly value-bytes ASCII characters: {@code "value-%010d-"} of i, then
 * lowercase filler {@code 'a' + (i * 31 + j) % 26} at position j. Both are
 * UTF-8 strings; the default (murmur2) partitioner spreads keys over the
 * partitions. So key k occurs N / K times, plus once more when k &lt; N % K.
 * With {@code --span-ms S} (S &gt; 0), record i has the timestamp
 * {@code base + i * S / N} (base: {@code --timestamp-base}, a multiple of a minute),
 * so event time advances evenly over S ms and windows close; without it, the
 * producer's clock.
 *
 * <h2>Outputs checked by verify</h2>
 * <ul>
 * <li>map: every input record's value upper-cased (ASCII), under the same key.
 *     Checked: every output value parses back to an index i &lt; N, its key is
 *     key(i), the value is exactly upper(value(i)), and each of the N indices
 *     occurs at least once (at-least-once may duplicate; duplicates are
 *     counted and reported, not failed).</li>
 * <li>identity: the same, with the value unchanged (raw pass-through).</li>
 * <li>enriched: the stream-table enrichment (streams --topology enrich): the same, with the
 *     value {@code <input value>|<table value of its key>}, the table being
 *     {@code produce --table}'s: key {@code "key-" + k} has the value {@code "price-" + k}
 *     (for every k &lt; K), timestamped before the input's first record, so every input
 *     record finds its key's value.</li>
 * <li>count: the latest value per key (offset order; a key lives in one
 *     partition) equals the true count of that key in the input, for all K
 *     keys, and no other key appears. A value is an 8-byte big-endian long
 *     (Kafka's LongSerializer) or, if not 8 bytes long, a UTF-8 decimal.</li>
 * <li>windowed: a windowed count emitted on window close, hopping windows of
 *     {@link #WINDOW_SIZE_MS} advancing by {@link #WINDOW_ADVANCE_MS}, grace
 *     {@link #WINDOW_GRACE_MS} (Nexmark q5's shape). Keys are Kafka's
 *     TimeWindowedSerde bytes (the key's UTF-8, then the window start as 8
 *     big-endian bytes). Checked: every output window's count equals the
 *     truth computed from the input's timestamps, every output window is
 *     closed (end + grace &lt;= the largest timestamp of its key's partition,
 *     murmur2-partitioned), and every closed window with records is in the
 *     output (at-least-once may repeat a window with the same count;
 *     repeats are counted, not failed).</li>
 * </ul>
 * Output topics are read with isolation.level=read_committed. verify prints
 * one JSON line on stdout, including the largest record timestamp seen: the
 * harness creates output topics with message.timestamp.type=LogAppendTime, so
 * that is when the broker acknowledged the last output record.
 */
public final class Main {

    private Main() {}

    /** A failed check or bad usage: the message is the whole story. */
    static final class Fail extends RuntimeException {
        Fail(String msg) {
            super(msg);
        }
    }

    /** Lines of stdin, read by a daemon thread; EOF is an empty Optional-like sentinel. */
    static final String EOF = new String("<eof>");
    private static java.util.concurrent.BlockingQueue<String> stdinLines;

    static synchronized java.util.concurrent.BlockingQueue<String> stdin() {
        if (stdinLines == null) {
            stdinLines = new java.util.concurrent.LinkedBlockingQueue<>();
            Thread t = new Thread(() -> {
                try (java.io.BufferedReader r = new java.io.BufferedReader(
                        new java.io.InputStreamReader(System.in, StandardCharsets.UTF_8))) {
                    for (String line; (line = r.readLine()) != null; ) stdinLines.add(line);
                } catch (java.io.IOException e) {
                    // treated as EOF
                }
                stdinLines.add(EOF);
            }, "stdin");
            t.setDaemon(true);
            t.start();
        }
        return stdinLines;
    }

    public static void main(String[] argv) throws Exception {
        int rc;
        try {
            rc = run(argv);
        } catch (Fail f) {
            System.err.println("error: " + f.getMessage());
            rc = 2;
        }
        System.out.flush();
        System.exit(rc);
    }

    static int run(String[] argv) throws Exception {
        if (argv.length == 0) {
            die("usage: Main produce|streams|create-topic|offsets|verify|watch|serve --opt value ...");
        }
        Args a = new Args(argv);
        return switch (argv[0]) {
            case "produce" -> produce(a);
            case "streams" -> streams(a);
            case "passthrough" -> passthrough(a);
            case "create-topic" -> createTopic(a);
            case "offsets" -> offsets(a);
            case "verify" -> verify(a);
            case "watch" -> watch(a);
            case "serve" -> serve();
            default -> { die("unknown mode " + argv[0]); yield 2; }
        };
    }

    /**
     * The harness's one tool JVM (saves a JVM start per run, and verify runs
     * JIT-warm): each stdin line is a command line of the modes above
     * (produce, watch, verify, create-topic, offsets; whitespace-separated),
     * answered with its JSON line(s) on stdout; a failing command answers
     * {"error":"..."}. Ends at EOF.
     */
    static int serve() throws Exception {
        java.util.concurrent.BlockingQueue<String> in = stdin();
        while (true) {
            String line = in.take();
            if (line == EOF) return 0;
            line = line.trim();
            if (line.isEmpty()) continue;
            String[] argv = line.split("\\s+");
            try {
                if (argv[0].equals("serve") || argv[0].equals("streams") || argv[0].equals("passthrough")) die("not in serve mode: " + argv[0]);
                int rc = run(argv);
                if (rc != 0) System.err.println("serve: " + argv[0] + " exited with " + rc);
            } catch (Exception e) {
                String msg = e instanceof Fail ? e.getMessage() : e.toString();
                System.err.println("serve: " + argv[0] + ": " + msg);
                System.out.println("{\"error\":\"" + json(msg) + "\"}");
            }
            System.out.flush();
        }
    }

    // ------------------------------------------------------------------ input

    /** Value of input record i: "value-%010d-" then lowercase filler, {@code bytes} long. */
    static String inputValue(long i, int bytes) {
        StringBuilder sb = new StringBuilder(bytes);
        sb.append("value-");
        String digits = Long.toString(i);
        for (int p = digits.length(); p < 10; p++) sb.append('0');
        sb.append(digits).append('-');
        for (int j = sb.length(); j < bytes; j++) {
            sb.append((char) ('a' + (int) ((i * 31 + j) % 26)));
        }
        sb.setLength(bytes);
        return sb.toString();
    }

    static String inputKey(long i, long keys) {
        return "key-" + (i % keys);
    }

    /** How many of records 0..n-1 carry key k. */
    static long expectedCount(long k, long n, long keys) {
        return n / keys + (k < n % keys ? 1 : 0);
    }

    /** The windowed workload (streams --topology windowed, verify --mode windowed, kafka_bench windowed-count). */
    static final long WINDOW_SIZE_MS = 60_000;
    static final long WINDOW_ADVANCE_MS = 10_000;
    static final long WINDOW_GRACE_MS = 5_000;

    /** Timestamp of input record i of n with --timestamp-base / --span-ms (span 0: none, -1). */
    static long inputTimestamp(long i, long n, long base, long span) {
        return span > 0 ? base + i * span / n : -1;
    }

    /** The enrichment table's value of key k (produce --table, verify --mode enriched). */
    static String tableValue(long k) {
        return "price-" + k;
    }

    static int produce(Args a) throws Exception {
        if (a.flag("table")) return produceTable(a);
        String bootstrap = a.req("bootstrap");
        String topic = a.req("topic");
        long n = a.reqLong("records");
        long keys = a.reqLong("keys");
        int partitions = (int) a.reqLong("partitions");
        int valueBytes = (int) a.optLong("value-bytes", 100);
        if (valueBytes < 17) die("--value-bytes must be at least 17");
        long base = a.optLong("timestamp-base", 0);
        long span = a.optLong("span-ms", 0);
        if (span > 0 && base % 60_000 != 0) die("--timestamp-base must be a multiple of 60000");

        try (Admin admin = admin(bootstrap)) {
            create(admin, topic, partitions, false);
        }
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ProducerConfig.ACKS_CONFIG, "all");
        p.put(ProducerConfig.LINGER_MS_CONFIG, "20");
        p.put(ProducerConfig.BATCH_SIZE_CONFIG, Integer.toString(256 * 1024));
        p.put(ProducerConfig.BUFFER_MEMORY_CONFIG, Long.toString(128L * 1024 * 1024));
        p.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, "none");
        p.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
        long t0 = System.nanoTime();
        AtomicReference<Exception> failure = new AtomicReference<>();
        try (KafkaProducer<String, String> producer =
                 new KafkaProducer<>(p, new StringSerializer(), new StringSerializer())) {
            for (long i = 0; i < n && failure.get() == null; i++) {
                long ts = inputTimestamp(i, n, base, span);
                producer.send(new ProducerRecord<>(topic, null, ts < 0 ? null : ts, inputKey(i, keys),
                        inputValue(i, valueBytes)),
                    (md, e) -> { if (e != null) failure.compareAndSet(null, e); });
            }
            producer.flush();
        }
        if (failure.get() != null) die("produce failed: " + failure.get());
        double secs = (System.nanoTime() - t0) / 1e9;
        // Sanity: the end offsets must add up to N.
        long total;
        try (Admin admin = admin(bootstrap)) {
            total = endOffsets(admin, topic).values().stream().mapToLong(Long::longValue).sum();
        }
        if (total != n) die("produced " + n + " records but the end offsets of " + topic + " add up to " + total);
        System.out.printf("{\"topic\":\"%s\",\"records\":%d,\"keys\":%d,\"partitions\":%d,"
            + "\"value_bytes\":%d,\"seconds\":%.3f,\"records_per_s\":%.0f}%n",
            topic, n, keys, partitions, valueBytes, secs, n / secs);
        return 0;
    }

    /** The enrichment's table topic: key-k -> price-k for every k < K, all at --timestamp. */
    static int produceTable(Args a) throws Exception {
        String bootstrap = a.req("bootstrap");
        String topic = a.req("topic");
        long keys = a.reqLong("keys");
        int partitions = (int) a.reqLong("partitions");
        long ts = a.reqLong("timestamp");
        try (Admin admin = admin(bootstrap)) {
            create(admin, topic, partitions, false);
        }
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ProducerConfig.ACKS_CONFIG, "all");
        p.put(ProducerConfig.LINGER_MS_CONFIG, "20");
        p.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
        long t0 = System.nanoTime();
        AtomicReference<Exception> failure = new AtomicReference<>();
        try (KafkaProducer<String, String> producer =
                 new KafkaProducer<>(p, new StringSerializer(), new StringSerializer())) {
            for (long k = 0; k < keys && failure.get() == null; k++) {
                producer.send(new ProducerRecord<>(topic, null, ts, "key-" + k, tableValue(k)),
                    (md, e) -> { if (e != null) failure.compareAndSet(null, e); });
            }
            producer.flush();
        }
        if (failure.get() != null) die("produce --table failed: " + failure.get());
        double secs = (System.nanoTime() - t0) / 1e9;
        System.out.printf("{\"topic\":\"%s\",\"records\":%d,\"keys\":%d,\"partitions\":%d,"
            + "\"seconds\":%.3f,\"records_per_s\":%.0f}%n", topic, keys, keys, partitions, secs, keys / secs);
        return 0;
    }

    // ---------------------------------------------------------------- streams

    static int streams(Args a) throws Exception {
        String topology = a.req("topology");
        String cache = a.opt("cache", "on");
        Properties p = new Properties();
        p.put(StreamsConfig.APPLICATION_ID_CONFIG, a.req("app-id"));
        p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, a.req("bootstrap"));
        p.put(StreamsConfig.STATE_DIR_CONFIG, a.req("state-dir"));
        p.put(StreamsConfig.DEFAULT_KEY_SERDE_CLASS_CONFIG, Serdes.StringSerde.class);
        p.put(StreamsConfig.DEFAULT_VALUE_SERDE_CLASS_CONFIG, Serdes.StringSerde.class);
        // Single broker: internal topics (changelogs) get one replica (the default, -1,
        // means "the broker's default", which is 1 here anyway).
        p.put(StreamsConfig.REPLICATION_FACTOR_CONFIG, 1);
        switch (cache) {
            case "on" -> { } // default: 10 MiB record cache
            case "off" -> p.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, 0L);
            default -> die("--cache must be on or off");
        }
        String commit = a.opt("commit-interval-ms", "default");
        if (!commit.equals("default")) p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, Long.parseLong(commit));

        if (topology.equals("windowed")) p.put(WindowedCount.EMIT_INTERVAL, 0L);
        // Kafka Streams 4.4 warns on every start without it (the default changes in 5.0).
        p.put("processing.exception.handler.global.enabled", true);

        // Built with the app's config (the default constructor reads an empty one, and warns).
        StreamsBuilder b = new StreamsBuilder(new org.apache.kafka.streams.TopologyConfig(new StreamsConfig(p)));
        KStream<String, String> in = b.stream(a.req("input"), Consumed.with(Serdes.String(), Serdes.String()));
        String output = a.req("output");
        switch (topology) {
            case "map" -> in.mapValues(v -> v.toUpperCase(java.util.Locale.ROOT))
                .to(output, Produced.with(Serdes.String(), Serdes.String()));
            case "count" -> in.groupByKey().count().toStream()
                .to(output, Produced.with(Serdes.String(), Serdes.Long()));
            // Emit on close. Kafka Streams looks for closed windows at most once a second of wall
            // clock, and only when a record arrives: the windows that close in the input's last
            // second would never be emitted (and a look delayed past the store's retention skips
            // windows: KAFKA-12960). So it looks at every record
            // (__emit.interval.ms.kstreams.windowed.aggregation__ = 0, set below), which
            // kstreams does too.
            case "windowed" -> in.groupByKey()
                .windowedBy(org.apache.kafka.streams.kstream.TimeWindows
                    .ofSizeAndGrace(Duration.ofMillis(WINDOW_SIZE_MS), Duration.ofMillis(WINDOW_GRACE_MS))
                    .advanceBy(Duration.ofMillis(WINDOW_ADVANCE_MS)))
                .emitStrategy(org.apache.kafka.streams.kstream.EmitStrategy.onWindowClose())
                .count()
                .toStream()
                .to(output, Produced.with(
                    org.apache.kafka.streams.kstream.WindowedSerdes.timeWindowedSerdeFrom(String.class, WINDOW_SIZE_MS),
                    Serdes.Long()));
            // Stream-table enrichment: each record joined with its key's value in the table
            // (a plain KTable, RocksDB), --table, which the harness produced before the input
            // (earlier timestamps: processed first).
            case "enrich" -> {
                org.apache.kafka.streams.kstream.KTable<String, String> table =
                    b.table(a.req("table"), Consumed.with(Serdes.String(), Serdes.String()));
                in.join(table, (v, t) -> v + "|" + t)
                    .to(output, Produced.with(Serdes.String(), Serdes.String()));
            }
            default -> die("--topology must be map, count, windowed or enrich");
        }
        KafkaStreams streams = new KafkaStreams(b.build(p), p);
        CountDownLatch done = new CountDownLatch(1);
        streams.setStateListener((now, before) -> {
            if (now == KafkaStreams.State.ERROR || now == KafkaStreams.State.NOT_RUNNING) done.countDown();
        });
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            streams.close(Duration.ofSeconds(10));
            done.countDown();
        }));
        streams.start();
        done.await();
        return streams.state() == KafkaStreams.State.ERROR ? 1 : 0;
    }

    // ------------------------------------------------------------ passthrough

    /**
     * The Java client's ceiling (bench/run's java-passthrough): a plain {@link KafkaConsumer} and
     * {@link KafkaProducer} at the Java client's defaults (bytes in, bytes out, no
     * deserialisation), the Java twin of kafka_bench's {@code raw} loop. Every polled record is
     * sent to the output with its key and value (the default partitioner: murmur2 of the key);
     * every commit interval (default 1 s, as {@code raw}) it waits until every record sent so far
     * is acknowledged ({@code flush}), then commits the next offsets synchronously under
     * {@code --group}. Only what the loop needs is set: offsets committed by the loop instead of
     * auto-commit, reading from the earliest offset. On SIGTERM it does a last flush and commit.
     */
    static int passthrough(Args a) throws Exception {
        String output = a.req("output");
        String commit = a.opt("commit-interval-ms", "default");
        long intervalMs = commit.equals("default") ? 1000 : Long.parseLong(commit);
        Properties c = new Properties();
        c.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, a.req("bootstrap"));
        c.put(ConsumerConfig.GROUP_ID_CONFIG, a.req("group"));
        c.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        c.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, a.req("bootstrap"));
        AtomicReference<Exception> failure = new AtomicReference<>();
        java.util.concurrent.atomic.AtomicBoolean stop = new java.util.concurrent.atomic.AtomicBoolean();
        CountDownLatch done = new CountDownLatch(1);
        Thread main = Thread.currentThread();
        try (KafkaConsumer<byte[], byte[]> consumer =
                 new KafkaConsumer<>(c, new ByteArrayDeserializer(), new ByteArrayDeserializer());
             KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(p,
                 new org.apache.kafka.common.serialization.ByteArraySerializer(),
                 new org.apache.kafka.common.serialization.ByteArraySerializer())) {
            Runtime.getRuntime().addShutdownHook(new Thread(() -> {
                stop.set(true); // seen within one poll (50 ms)
                try {
                    done.await(15, TimeUnit.SECONDS);
                } catch (InterruptedException e) {
                    main.interrupt();
                }
            }));
            consumer.subscribe(List.of(a.req("input")));
            Map<TopicPartition, OffsetAndMetadata> next = new HashMap<>();
            long lastCommit = System.nanoTime();
            while (true) {
                boolean stopping = stop.get();
                if (stopping || System.nanoTime() - lastCommit >= intervalMs * 1_000_000L) {
                    producer.flush();
                    if (failure.get() != null) die("passthrough: a send failed: " + failure.get());
                    if (!next.isEmpty()) {
                        consumer.commitSync(next);
                        next.clear();
                    }
                    lastCommit = System.nanoTime();
                    if (stopping) break;
                }
                ConsumerRecords<byte[], byte[]> records = consumer.poll(Duration.ofMillis(50));
                for (ConsumerRecord<byte[], byte[]> r : records) {
                    producer.send(new ProducerRecord<>(output, r.key(), r.value()),
                        (md, e) -> { if (e != null) failure.compareAndSet(null, e); });
                    next.put(new TopicPartition(r.topic(), r.partition()), new OffsetAndMetadata(r.offset() + 1));
                }
            }
        } finally {
            done.countDown();
        }
        return 0;
    }

    // ------------------------------------------------------------ admin tools

    static int createTopic(Args a) throws Exception {
        try (Admin admin = admin(a.req("bootstrap"))) {
            for (String t : a.req("topic").split(",")) {
                create(admin, t, (int) a.reqLong("partitions"), a.flag("log-append-time"));
            }
        }
        return 0;
    }

    /** Committed offsets of a group vs. the end offsets of a topic. */
    static int offsets(Args a) throws Exception {
        String group = a.req("group");
        String topic = a.req("topic");
        boolean wait = a.flag("wait");
        double timeout = Double.parseDouble(a.opt("timeout-s", "0"));
        try (Admin admin = admin(a.req("bootstrap"))) {
            String res = waitCommitted(admin, group, topic, wait, timeout, null);
            System.out.println(res);
            return res.contains("\"caught_up\":true") ? 0 : 1;
        }
    }

    /**
     * Polls every 100 ms until the group's committed offsets on every partition
     * of the topic reach that partition's end offset (or once, if !wait).
     */
    static String waitCommitted(Admin admin, String group, String topic, boolean wait, double timeoutS,
                                java.util.concurrent.BlockingQueue<String> abort) throws Exception {
        Map<TopicPartition, Long> end = endOffsets(admin, topic);
        long endSum = end.values().stream().mapToLong(Long::longValue).sum();
        long t0 = System.nanoTime();
        long lastReport = t0;
        while (true) {
            Map<TopicPartition, OffsetAndMetadata> committed;
            try {
                committed = admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get();
            } catch (ExecutionException e) {
                committed = Map.of();
            }
            long lag = 0;
            for (Map.Entry<TopicPartition, Long> e : end.entrySet()) {
                OffsetAndMetadata om = committed.get(e.getKey());
                long c = om == null ? 0 : om.offset();
                lag += Math.max(0, e.getValue() - c);
            }
            double elapsed = (System.nanoTime() - t0) / 1e9;
            boolean caughtUp = lag == 0;
            boolean aborted = !caughtUp && abort != null && abort.peek() != null;
            if (caughtUp || aborted || !wait || (timeoutS > 0 && elapsed > timeoutS)) {
                return String.format("{\"group\":\"%s\",\"topic\":\"%s\",\"end\":%d,\"lag\":%d,"
                    + "\"caught_up\":%s,\"aborted\":%s,\"seen_at_ms\":%d}", group, topic, endSum, lag, caughtUp,
                    aborted, System.currentTimeMillis());
            }
            if (System.nanoTime() - lastReport > 10_000_000_000L) {
                System.err.printf("offsets: group %s lag %d of %d after %.0f s%n", group, lag, endSum, elapsed);
                lastReport = System.nanoTime();
            }
            Thread.sleep(100);
        }
    }

    /**
     * One benchmark run: creates the output topic (--create-output), prints
     * {"ready":true}, waits until the group caught up (prints the offsets JSON
     * line), then reads one line from stdin (the harness has stopped the
     * system under test), then verifies (prints the verify line). A stdin line
     * that arrives while waiting (the system died) ends the wait early.
     */
    static int watch(Args a) throws Exception {
        java.util.concurrent.BlockingQueue<String> in = stdin();
        try (Admin admin = admin(a.req("bootstrap"))) {
            if (a.flag("create-output")) {
                create(admin, a.req("topic"), (int) a.reqLong("partitions"), true);
            }
            endOffsets(admin, a.req("input")); // connected and the input is known
            System.out.println("{\"ready\":true}");
            System.out.flush();
            String res = waitCommitted(admin, a.req("group"), a.req("input"), true,
                Double.parseDouble(a.opt("timeout-s", "0")), in);
            System.out.println(res);
            System.out.flush();
        }
        if (in.take() == EOF) in.add(EOF); // "stopped"; EOF stays for serve's loop
        return verify(a);
    }

    // ----------------------------------------------------------------- verify

    static int verify(Args a) throws Exception {
        String bootstrap = a.req("bootstrap");
        String topic = a.req("topic");
        String mode = a.req("mode");
        long n = a.reqLong("records");
        long keys = a.reqLong("keys");
        int valueBytes = (int) a.optLong("value-bytes", 100);
        if (n > Integer.MAX_VALUE) die("--records too large");

        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        p.put(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, "10000");
        p.put(ConsumerConfig.FETCH_MAX_BYTES_CONFIG, Integer.toString(64 * 1024 * 1024));
        p.put(ConsumerConfig.MAX_PARTITION_FETCH_BYTES_CONFIG, Integer.toString(16 * 1024 * 1024));

        long records = 0, duplicates = 0, maxTs = Long.MIN_VALUE, minTs = Long.MAX_VALUE;
        boolean appendTime = true;
        List<String> errors = new ArrayList<>();
        BitSet seen = new BitSet((int) n);
        Map<String, Long> latest = new HashMap<>();
        WindowCheck windows = mode.equals("windowed")
            ? new WindowCheck(n, keys, a.optLong("timestamp-base", 0), a.optLong("span-ms", 0), errors)
            : null;
        long t0 = System.nanoTime();

        try (KafkaConsumer<byte[], byte[]> c =
                 new KafkaConsumer<>(p, new ByteArrayDeserializer(), new ByteArrayDeserializer())) {
            List<TopicPartition> tps = new ArrayList<>();
            c.partitionsFor(topic).forEach(pi -> tps.add(new TopicPartition(topic, pi.partition())));
            c.assign(tps);
            c.seekToBeginning(tps);
            Map<TopicPartition, Long> end = c.endOffsets(tps);
            Set<TopicPartition> pending = new HashSet<>();
            for (TopicPartition tp : tps) if (end.get(tp) > 0) pending.add(tp);
            long idleSince = System.nanoTime();
            while (!pending.isEmpty()) {
                ConsumerRecords<byte[], byte[]> batch = c.poll(Duration.ofMillis(500));
                if (!batch.isEmpty()) idleSince = System.nanoTime();
                for (ConsumerRecord<byte[], byte[]> r : batch) {
                    records++;
                    if (r.timestampType() != TimestampType.LOG_APPEND_TIME) appendTime = false;
                    maxTs = Math.max(maxTs, r.timestamp());
                    minTs = Math.min(minTs, r.timestamp());
                    if (windows != null) {
                        windows.add(r.key(), decodeCount(r.value(), errors));
                        continue;
                    }
                    String key = r.key() == null ? null : new String(r.key(), StandardCharsets.UTF_8);
                    if (mode.equals("count")) {
                        latest.put(key, decodeCount(r.value(), errors));
                    } else {
                        int i = checkMapped(key, r.value(), mode, n, keys, valueBytes, errors);
                        if (i >= 0) {
                            if (seen.get(i)) duplicates++;
                            seen.set(i);
                        }
                    }
                }
                pending.removeIf(tp -> c.position(tp) >= end.get(tp));
                if (System.nanoTime() - idleSince > 30_000_000_000L) {
                    errors.add("stuck reading " + topic + ": positions never reached the end offsets " + end);
                    break;
                }
            }
        }

        String detail;
        if (windows != null) {
            detail = windows.finish(tps(bootstrap, topic));
        } else if (mode.equals("count")) {
            long wrong = 0, missing = 0, extra = 0;
            for (long k = 0; k < keys; k++) {
                String key = "key-" + k;
                Long got = latest.get(key);
                long want = expectedCount(k, n, keys);
                if (got == null) {
                    if (want > 0 && missing++ < 5) errors.add("missing key " + key + " (want count " + want + ")");
                } else if (got != want) {
                    if (wrong++ < 5) errors.add("key " + key + ": latest count " + got + ", want " + want);
                }
            }
            for (String key : latest.keySet()) {
                if (!isKnownKey(key, keys) && extra++ < 5) errors.add("unexpected key " + key);
            }
            if (missing > 0 || wrong > 0 || extra > 0) {
                errors.add(String.format("count: %d keys missing, %d wrong, %d unexpected (of %d)",
                    missing, wrong, extra, keys));
            }
            detail = String.format("\"distinct_keys\":%d,\"missing\":%d,\"wrong\":%d,\"unexpected\":%d",
                latest.size(), missing, wrong, extra);
        } else {
            long absent = n - seen.cardinality();
            if (absent > 0) {
                int first = seen.nextClearBit(0);
                errors.add(String.format("%s: %d of %d input records have no output (first: index %d)",
                    mode, absent, n, first));
            }
            detail = String.format("\"distinct_inputs\":%d,\"absent\":%d,\"duplicates\":%d",
                seen.cardinality(), absent, duplicates);
        }
        if (records > 0 && !appendTime) {
            errors.add("output records do not carry LogAppendTime timestamps: last_append_ms is not the "
                + "broker's acknowledgement time (create the topic with message.timestamp.type=LogAppendTime)");
        }
        boolean ok = errors.isEmpty();
        for (String e : errors) System.err.println("verify: " + e);

        deleteTopics(a, bootstrap);

        System.out.printf("{\"ok\":%s,\"mode\":\"%s\",\"topic\":\"%s\",\"records\":%d,%s,"
            + "\"first_append_ms\":%d,\"last_append_ms\":%d,\"verify_s\":%.3f,\"error\":\"%s\"}%n",
            ok, mode, topic, records, detail, records > 0 ? minTs : 0, records > 0 ? maxTs : 0,
            (System.nanoTime() - t0) / 1e9, ok ? "" : json(errors.get(errors.size() - 1)));
        return ok ? 0 : 1;
    }

    /** Partitions of a topic (verify's output topic: as many as the input's). */
    private static int tps(String bootstrap, String topic) throws Exception {
        try (Admin admin = admin(bootstrap)) {
            return admin.describeTopics(List.of(topic)).allTopicNames().get().get(topic).partitions().size();
        }
    }

    /**
     * verify --mode windowed: the true count of every hopping window of every key, computed
     * from the input's timestamps, against the output (see the class docs).
     */
    static final class WindowCheck {
        final long n, keys, base, span;
        final List<String> errors;
        /** Window index w of key k: start = first + w * advance; truth[k * slots + w]. */
        final long first;
        final int slots;
        final int[] truth;
        final BitSet seen;
        long outputs, duplicates, wrong, unexpected, open;

        WindowCheck(long n, long keys, long base, long span, List<String> errors) {
            if (span <= 0) die("verify --mode windowed needs the input's --timestamp-base and --span-ms");
            if (keys * ((span + WINDOW_SIZE_MS) / WINDOW_ADVANCE_MS + 2) > Integer.MAX_VALUE) die("too many windows");
            this.n = n;
            this.keys = keys;
            this.base = base;
            this.span = span;
            this.errors = errors;
            this.first = Math.floorDiv(base - WINDOW_SIZE_MS, WINDOW_ADVANCE_MS) * WINDOW_ADVANCE_MS;
            this.slots = (int) ((span + 2 * WINDOW_SIZE_MS) / WINDOW_ADVANCE_MS + 2);
            this.truth = new int[(int) (keys * slots)];
            this.seen = new BitSet(truth.length);
            for (long i = 0; i < n; i++) {
                long ts = inputTimestamp(i, n, base, span);
                long k = i % keys;
                // Kafka's TimeWindows.windowsFor: every start (a multiple of the advance) with start <= ts < start + size.
                long start = Math.max(0, ts - WINDOW_SIZE_MS + WINDOW_ADVANCE_MS) / WINDOW_ADVANCE_MS * WINDOW_ADVANCE_MS;
                for (; start <= ts; start += WINDOW_ADVANCE_MS) truth[(int) (k * slots + slot(start))]++;
            }
        }

        int slot(long start) {
            return (int) ((start - first) / WINDOW_ADVANCE_MS);
        }

        void add(byte[] key, Long count) {
            outputs++;
            if (key == null || key.length < 9 || count == null) {
                if (unexpected++ < 5) errors.add("windowed: an output record that is not (windowed key, count)");
                return;
            }
            String inner = new String(key, 0, key.length - 8, StandardCharsets.UTF_8);
            long start = 0;
            for (int b = key.length - 8; b < key.length; b++) start = (start << 8) | (key[b] & 0xff);
            long k = isKnownKey(inner, keys) ? Long.parseLong(inner.substring(4)) : -1;
            if (k < 0 || start < first || (start - first) % WINDOW_ADVANCE_MS != 0 || slot(start) >= slots) {
                if (unexpected++ < 5) errors.add("windowed: unexpected window " + inner + " @" + start);
                return;
            }
            int at = (int) (k * slots + slot(start));
            if (seen.get(at)) duplicates++;
            seen.set(at);
            if (truth[at] != count) {
                if (wrong++ < 5) errors.add("windowed: " + inner + " [" + start + ", " + (start + WINDOW_SIZE_MS)
                    + "): count " + count + ", want " + truth[at]);
            }
        }

        /** Checks closedness and completeness; the JSON detail. */
        String finish(int partitions) {
            // The largest timestamp of each partition (the Java client's default partitioner).
            long[] maxTs = new long[partitions];
            Arrays.fill(maxTs, Long.MIN_VALUE);
            int[] partitionOf = new int[(int) keys];
            for (long k = 0; k < keys; k++) {
                byte[] kb = inputKey(k, keys).getBytes(StandardCharsets.UTF_8);
                partitionOf[(int) k] = Utils.toPositive(Utils.murmur2(kb)) % partitions;
            }
            for (long i = 0; i < n; i++) {
                int p = partitionOf[(int) (i % keys)];
                maxTs[p] = Math.max(maxTs[p], inputTimestamp(i, n, base, span));
            }
            long missing = 0, closed = 0;
            for (long k = 0; k < keys; k++) {
                long streamTime = maxTs[partitionOf[(int) k]];
                for (int w = 0; w < slots; w++) {
                    int at = (int) (k * slots + w);
                    long start = first + w * WINDOW_ADVANCE_MS;
                    boolean isClosed = start + WINDOW_SIZE_MS + WINDOW_GRACE_MS <= streamTime;
                    if (isClosed && truth[at] > 0) closed++;
                    if (seen.get(at) && !isClosed) {
                        if (open++ < 5) errors.add("windowed: " + inputKey(k, keys) + " [" + start + ", "
                            + (start + WINDOW_SIZE_MS) + ") emitted before it closed (stream time " + streamTime + ")");
                    } else if (!seen.get(at) && isClosed && truth[at] > 0) {
                        if (missing++ < 5) errors.add("windowed: closed window " + inputKey(k, keys) + " [" + start
                            + ", " + (start + WINDOW_SIZE_MS) + ") (count " + truth[at] + ") not emitted");
                    }
                }
            }
            if (missing > 0 || wrong > 0 || unexpected > 0 || open > 0) {
                errors.add(String.format("windowed: %d closed windows missing, %d wrong, %d unexpected, %d not closed "
                    + "(of %d closed windows)", missing, wrong, unexpected, open, closed));
            }
            return String.format("\"closed_windows\":%d,\"missing\":%d,\"wrong\":%d,\"unexpected\":%d,"
                + "\"not_closed\":%d,\"duplicates\":%d", closed, missing, wrong, unexpected, open, duplicates);
        }
    }

    private static boolean isKnownKey(String key, long keys) {
        if (key == null || !key.startsWith("key-")) return false;
        try {
            long k = Long.parseLong(key.substring(4));
            return k >= 0 && k < keys && key.equals("key-" + k);
        } catch (NumberFormatException e) {
            return false;
        }
    }

    private static Long decodeCount(byte[] v, List<String> errors) {
        if (v == null) return null;
        if (v.length == 8) {
            long x = 0;
            for (byte b : v) x = (x << 8) | (b & 0xff);
            return x;
        }
        try {
            return Long.parseLong(new String(v, StandardCharsets.UTF_8).trim());
        } catch (NumberFormatException e) {
            if (errors.size() < 20) errors.add("count value is neither an 8-byte long nor a decimal: " + v.length + " bytes");
            return null;
        }
    }

    /** Returns the input index the output record came from, or -1 (error recorded). */
    private static int checkMapped(String key, byte[] value, String mode, long n, long keys, int valueBytes,
                                   List<String> errors) {
        String v = value == null ? "" : new String(value, StandardCharsets.UTF_8);
        long i = -1;
        boolean enriched = mode.equals("enriched");
        if ((enriched ? v.length() > valueBytes : v.length() == valueBytes) && valueBytes >= 17
                && v.charAt(16) == '-') {
            try {
                i = Long.parseLong(v.substring(6, 16));
            } catch (NumberFormatException e) {
                i = -1;
            }
        }
        String want = null;
        if (i >= 0 && i < n) {
            want = inputValue(i, valueBytes);
            if (mode.equals("map")) want = want.toUpperCase(java.util.Locale.ROOT);
            else if (enriched) want = want + "|" + tableValue(i % keys);
            else if (!mode.equals("identity")) die("--mode must be map, identity, enriched, count or windowed");
        }
        if (want == null || !want.equals(v)) {
            if (errors.size() < 20) errors.add(mode + ": unexpected output value '" + abbrev(v) + "'");
            return -1;
        }
        if (!inputKey(i, keys).equals(key)) {
            if (errors.size() < 20) errors.add(mode + ": record " + i + " has key " + key + ", want " + inputKey(i, keys));
            return -1;
        }
        return (int) i;
    }

    // ---------------------------------------------------------------- helpers

    /** Deletes --delete-topics (comma list) and every topic starting with --delete-prefix. */
    private static void deleteTopics(Args a, String bootstrap) {
        String list = a.opt("delete-topics", "");
        String prefix = a.opt("delete-prefix", "");
        if (list.isEmpty() && prefix.isEmpty()) return;
        try (Admin admin = admin(bootstrap)) {
            Set<String> doomed = new HashSet<>();
            for (String t : list.split(",")) if (!t.isBlank()) doomed.add(t.trim());
            if (!prefix.isEmpty()) {
                for (String t : admin.listTopics().names().get()) if (t.startsWith(prefix)) doomed.add(t);
            }
            for (Map.Entry<String, KafkaFuture<Void>> e : admin.deleteTopics(doomed).topicNameValues().entrySet()) {
                try {
                    e.getValue().get(30, TimeUnit.SECONDS);
                } catch (ExecutionException ex) {
                    if (!(ex.getCause() instanceof UnknownTopicOrPartitionException)) {
                        System.err.println("verify: could not delete " + e.getKey() + ": " + ex.getCause());
                    }
                }
            }
        } catch (Exception e) {
            System.err.println("verify: topic clean-up failed: " + e);
        }
    }

    static Admin admin(String bootstrap) {
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        return Admin.create(p);
    }

    static void create(Admin admin, String topic, int partitions, boolean logAppendTime) throws Exception {
        NewTopic nt = new NewTopic(topic, partitions, (short) 1);
        if (logAppendTime) nt.configs(Map.of("message.timestamp.type", "LogAppendTime"));
        try {
            admin.createTopics(List.of(nt)).all().get(60, TimeUnit.SECONDS);
        } catch (ExecutionException e) {
            if (e.getCause() instanceof TopicExistsException) die("topic " + topic + " already exists");
            throw e;
        }
        // Wait until every partition has a leader.
        long deadline = System.nanoTime() + 30_000_000_000L;
        while (true) {
            try {
                TopicDescription d = admin.describeTopics(List.of(topic)).allTopicNames().get().get(topic);
                if (d.partitions().size() == partitions
                        && d.partitions().stream().allMatch(pi -> pi.leader() != null && !pi.leader().isEmpty())) {
                    return;
                }
            } catch (ExecutionException e) {
                // not yet known
            }
            if (System.nanoTime() > deadline) die("topic " + topic + " has no leaders after 30 s");
            Thread.sleep(50);
        }
    }

    static Map<TopicPartition, Long> endOffsets(Admin admin, String topic) throws Exception {
        TopicDescription d = admin.describeTopics(List.of(topic)).allTopicNames().get().get(topic);
        Map<TopicPartition, OffsetSpec> req = new HashMap<>();
        d.partitions().forEach(pi -> req.put(new TopicPartition(topic, pi.partition()), OffsetSpec.latest()));
        Map<TopicPartition, ListOffsetsResult.ListOffsetsResultInfo> res = admin.listOffsets(req).all().get();
        Map<TopicPartition, Long> out = new HashMap<>();
        res.forEach((tp, info) -> out.put(tp, info.offset()));
        return out;
    }

    private static String abbrev(String s) {
        return s.length() > 40 ? s.substring(0, 40) + "..." : s;
    }

    private static String json(String s) {
        return s.replace("\\", "\\\\").replace("\"", "\\\"").replace("\n", " ");
    }

    static void die(String msg) {
        throw new Fail(msg);
    }

    /** --name value pairs after the mode; --flag alone (followed by another --opt or nothing) is true. */
    static final class Args {
        private final Map<String, String> m = new HashMap<>();

        Args(String[] argv) {
            for (int i = 1; i < argv.length; i++) {
                String k = argv[i];
                if (!k.startsWith("--")) die("unexpected argument " + k);
                k = k.substring(2);
                int eq = k.indexOf('=');
                if (eq >= 0) {
                    m.put(k.substring(0, eq), k.substring(eq + 1));
                } else if (i + 1 < argv.length && !argv[i + 1].startsWith("--")) {
                    m.put(k, argv[++i]);
                } else {
                    m.put(k, "true");
                }
            }
        }

        String req(String k) {
            String v = m.get(k);
            if (v == null) die("missing --" + k);
            return v;
        }

        String opt(String k, String dflt) {
            return m.getOrDefault(k, dflt);
        }

        long reqLong(String k) {
            return Long.parseLong(req(k));
        }

        long optLong(String k, long dflt) {
            return m.containsKey(k) ? Long.parseLong(m.get(k)) : dflt;
        }

        boolean flag(String k) {
            return Boolean.parseBoolean(m.getOrDefault(k, "false"));
        }
    }
}
