// Command kstreams-bench-go runs the map and count topologies of bench/run on
// github.com/birdayz/kstreams (system (f) of issues 6 and 17), without
// changing the library. See README.md for why it is shaped like this.
//
// As bench/run starts it (the supervisor):
//
//	kstreams-bench-go --bootstrap B --group G --input IN --output OUT \
//	    --topology map|count --state-dir DIR [--commit-interval-ms N|default]
//
// The supervisor
//  1. for count, creates the changelog topic <group>-counts-changelog
//     (compacted, as many partitions as the input) and writes one tombstone
//     for an unused key into each of its partitions (the library, restoring
//     an empty changelog partition, waits out a 5-minute timeout and fails);
//  2. joins the group as a member of its own that takes no partition but
//     leads the group, with a balancer that gives each worker at most one
//     partition and never moves a partition a worker owns (the library's own
//     balancer gives several partitions to one member, which then fails on
//     its state directory's lock);
//  3. starts one worker process per input partition (this binary, `worker`),
//     each with its own state directory, all in the group;
//  4. waits for its workers (so that the CPU the harness reads with wait4
//     covers them) and, on SIGTERM, passes it on and waits again.
//
// A worker is one kstreams.App with one worker routine.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/birdayz/kstreams"
	"github.com/birdayz/kstreams/kdag"
	"github.com/birdayz/kstreams/kprocessor"
	"github.com/birdayz/kstreams/kserde"
	"github.com/birdayz/kstreams/kstate"
	"github.com/birdayz/kstreams/kstate/pebble"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

const (
	storeName = "counts"
	// leaderMarker is the user data of the leader's join metadata: how the
	// leader's balancer tells itself apart from the workers. Only the leader
	// reads join metadata, so no worker ever sees it.
	leaderMarker = "kstreams-bench-go-leader"
	// The library's balancer protocol: the leader must offer the same name,
	// or the broker finds no protocol common to all members.
	libraryProtocol = "kstreams-partitiongroup-cooperative-sticky"
)

// log: warnings and errors only (the library logs every task's life at info,
// also through slog's default logger, which main points here too).
var log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

// phase logs a supervisor step with the time since start when
// KSTREAMS_BENCH_GO_TRACE is set (to see where a run's start-up goes).
var (
	started = time.Now()
	trace   = os.Getenv("KSTREAMS_BENCH_GO_TRACE") != ""
)

func phase(what string) {
	if trace {
		fmt.Fprintf(os.Stderr, "kstreams-bench-go: %7.3f s %s\n", time.Since(started).Seconds(), what)
	}
}

type options struct {
	bootstrap, group, input, output, topology, stateDir, commitInterval string
}

func parse(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("kstreams-bench-go", flag.ContinueOnError)
	fs.StringVar(&o.bootstrap, "bootstrap", "127.0.0.1:9092", "broker address(es), comma-separated")
	fs.StringVar(&o.group, "group", "", "consumer group = application id (required)")
	fs.StringVar(&o.input, "input", "", "input topic (required)")
	fs.StringVar(&o.output, "output", "", "output topic (required)")
	fs.StringVar(&o.topology, "topology", "map", "map | count")
	fs.StringVar(&o.stateDir, "state-dir", "", "state directory (required for count)")
	fs.StringVar(&o.commitInterval, "commit-interval-ms", "default", "commit interval in ms, or default (the library's 5 s)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if o.group == "" || o.input == "" || o.output == "" {
		return o, errors.New("--group, --input and --output are required")
	}
	if o.topology != "map" && o.topology != "count" {
		return o, fmt.Errorf("--topology must be map or count, not %q", o.topology)
	}
	if o.topology == "count" && o.stateDir == "" {
		return o, errors.New("--topology count needs --state-dir")
	}
	return o, nil
}

func (o options) brokers() []string { return strings.Split(o.bootstrap, ",") }

func (o options) argv() []string {
	return []string{"--bootstrap", o.bootstrap, "--group", o.group, "--input", o.input,
		"--output", o.output, "--topology", o.topology, "--state-dir", o.stateDir,
		"--commit-interval-ms", o.commitInterval}
}

func main() {
	slog.SetDefault(log)
	args := os.Args[1:]
	worker := len(args) > 0 && args[0] == "worker"
	if worker {
		args = args[1:]
	}
	o, err := parse(args)
	if err == nil {
		if worker {
			err = runWorker(o)
		} else {
			err = supervise(o)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "kstreams-bench-go:", err)
		os.Exit(1)
	}
}

// ---------------------------------------------------------------------------
// Worker: one kstreams.App
// ---------------------------------------------------------------------------

type upper struct {
	ctx kprocessor.ProcessorContext[string, string]
}

func (p *upper) Init(ctx kprocessor.ProcessorContext[string, string]) error { p.ctx = ctx; return nil }
func (p *upper) Close() error                                               { return nil }
func (p *upper) Process(ctx context.Context, k, v string) error {
	p.ctx.Forward(ctx, k, strings.ToUpper(v))
	return nil
}

type count struct {
	ctx   kprocessor.ProcessorContext[string, int64]
	store kstate.KeyValueStore[string, int64]
}

func (p *count) Init(ctx kprocessor.ProcessorContext[string, int64]) error {
	store, err := kstate.GetKeyValueStore[string, int64](ctx, storeName)
	if err != nil {
		return err
	}
	p.ctx, p.store = ctx, store
	return nil
}
func (p *count) Close() error { return nil }
func (p *count) Process(ctx context.Context, k, _ string) error {
	n, _, err := p.store.Get(ctx, k)
	if err != nil {
		return err
	}
	n++
	if err := p.store.Set(ctx, k, n); err != nil {
		return err
	}
	p.ctx.Forward(ctx, k, n)
	return nil
}

func runWorker(o options) error {
	b := kdag.NewBuilder()
	if err := kstreams.RegisterSource(b, "source", o.input, kserde.StringDeserializer, kserde.StringDeserializer); err != nil {
		return err
	}
	switch o.topology {
	case "map":
		err := kstreams.RegisterProcessor(b, func() kprocessor.Processor[string, string, string, string] { return &upper{} },
			"upper", "source")
		if err != nil {
			return err
		}
		if err := kstreams.RegisterSink(b, "sink", o.output, kserde.StringSerializer, kserde.StringSerializer, "upper"); err != nil {
			return err
		}
	case "count":
		store := pebble.NewKeyValueStoreBuilder[string, int64](storeName, o.stateDir).WithSerdes(
			kserde.StringSerializer, kserde.StringDeserializer, kserde.Int64Serializer, kserde.Int64Deserializer)
		if err := kdag.RegisterStore(b, store, storeName); err != nil {
			return err
		}
		err := kstreams.RegisterProcessor(b, func() kprocessor.Processor[string, string, string, int64] { return &count{} },
			"count", "source", storeName)
		if err != nil {
			return err
		}
		if err := kstreams.RegisterSink(b, "sink", o.output, kserde.StringSerializer, kserde.Int64Serializer, "count"); err != nil {
			return err
		}
	}
	dag, err := b.Build()
	if err != nil {
		return err
	}
	opts := []kstreams.Option{kstreams.WithBrokers(o.brokers()), kstreams.WithWorkersCount(1), kstreams.WithLog(log)}
	if o.stateDir != "" {
		opts = append(opts, kstreams.WithStateDir(o.stateDir))
	}
	if o.commitInterval != "default" {
		ms, err := strconv.Atoi(o.commitInterval)
		if err != nil || ms <= 0 {
			return fmt.Errorf("--commit-interval-ms: %q is not a positive number of ms", o.commitInterval)
		}
		opts = append(opts, kstreams.WithCommitInterval(time.Duration(ms)*time.Millisecond))
	}
	app, err := kstreams.New(dag, o.group, opts...)
	if err != nil {
		return err
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	go func() {
		<-sig
		_ = app.Close()
	}()
	return app.Run()
}

// ---------------------------------------------------------------------------
// Supervisor
// ---------------------------------------------------------------------------

// onePartitionEach is the leader's balancer: the library's protocol name and
// join metadata, its own assignment.
type onePartitionEach struct {
	inner    kgo.GroupBalancer
	balanced atomic.Bool
}

func (b *onePartitionEach) ProtocolName() string { return libraryProtocol }
func (b *onePartitionEach) IsCooperative() bool  { return b.inner.IsCooperative() }
func (b *onePartitionEach) JoinGroupMetadata(interests []string, current map[string][]int32, gen int32) []byte {
	raw := b.inner.JoinGroupMetadata(interests, current, gen)
	var meta kmsg.ConsumerMemberMetadata
	if err := meta.ReadFrom(raw); err != nil {
		return raw
	}
	meta.UserData = []byte(leaderMarker)
	return meta.AppendTo(nil)
}
func (b *onePartitionEach) ParseSyncAssignment(assignment []byte) (map[string][]int32, error) {
	return b.inner.ParseSyncAssignment(assignment)
}
func (b *onePartitionEach) MemberBalancer(members []kmsg.JoinGroupResponseMember) (kgo.GroupMemberBalancer, map[string]struct{}, error) {
	cb, err := kgo.NewConsumerBalancer(b, members)
	if err != nil {
		return nil, nil, err
	}
	return cb, cb.MemberTopics(), nil
}

// Balance keeps every partition a worker owns where it is (the protocol is
// cooperative: moving it would need a revocation round first) and gives each
// free partition to a worker that has none, workers in member-id order.
func (b *onePartitionEach) Balance(cb *kgo.ConsumerBalancer, topics map[string]int32) kgo.IntoSyncAssignment {
	plan := cb.NewPlan()
	type tp struct {
		topic     string
		partition int32
	}
	taken := map[tp]bool{}
	var idle []*kmsg.JoinGroupResponseMember
	cb.EachMember(func(m *kmsg.JoinGroupResponseMember, meta *kmsg.ConsumerMemberMetadata) {
		if string(meta.UserData) == leaderMarker {
			return
		}
		for _, owned := range meta.OwnedPartitions {
			if _, ok := topics[owned.Topic]; !ok || len(owned.Partitions) == 0 {
				continue
			}
			p := tp{owned.Topic, owned.Partitions[0]} // at most one: this balancer never gives more
			if !taken[p] {
				taken[p] = true
				plan.AddPartition(m, p.topic, p.partition)
				return
			}
		}
		idle = append(idle, m)
	})
	sort.Slice(idle, func(i, j int) bool { return idle[i].MemberID < idle[j].MemberID })
	names := make([]string, 0, len(topics))
	for t := range topics {
		names = append(names, t)
	}
	sort.Strings(names)
	for _, t := range names {
		for p := int32(0); p < topics[t] && len(idle) > 0; p++ {
			if !taken[tp{t, p}] {
				plan.AddPartition(idle[0], t, p)
				idle = idle[1:]
			}
		}
	}
	b.balanced.Store(true)
	return plan
}

func supervise(o options) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	admin, err := kgo.NewClient(kgo.SeedBrokers(o.brokers()...))
	if err != nil {
		return err
	}
	defer admin.Close()
	adm := kadm.NewClient(admin)
	details, err := adm.ListTopics(ctx, o.input)
	if err != nil {
		return fmt.Errorf("describing %s: %w", o.input, err)
	}
	detail, ok := details[o.input]
	if !ok || detail.Err != nil {
		return fmt.Errorf("input topic %s: %v", o.input, detail.Err)
	}
	partitions := int32(len(detail.Partitions))
	phase("input described")

	if o.topology == "count" {
		if err := prepareChangelog(ctx, o.brokers(), adm, o.group+"-"+storeName+"-changelog", partitions); err != nil {
			return err
		}
		phase("changelog created, tombstones written")
	}

	// The leader: joins first, so the broker makes it the group's leader.
	bal := &onePartitionEach{inner: kgo.CooperativeStickyBalancer()}
	leader, err := kgo.NewClient(kgo.SeedBrokers(o.brokers()...), kgo.ConsumerGroup(o.group),
		kgo.ConsumeTopics(o.input), kgo.Balancers(bal), kgo.DisableAutoCommit())
	if err != nil {
		return err
	}
	defer leader.Close()
	pollCtx, stopPoll := context.WithCancel(context.Background())
	defer stopPoll()
	go func() {
		for pollCtx.Err() == nil {
			leader.PollFetches(pollCtx) // never assigned anything; keeps the client's loop going
		}
	}()
	for !bal.balanced.Load() {
		if ctx.Err() != nil {
			return errors.New("the leader member did not join the group within 2 minutes")
		}
		time.Sleep(20 * time.Millisecond)
	}

	phase("leader balanced the group")
	self, err := os.Executable()
	if err != nil {
		return err
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	var wg sync.WaitGroup
	var failed atomic.Bool
	children := make([]*exec.Cmd, 0, partitions)
	for i := int32(0); i < partitions; i++ {
		wo := o
		if o.stateDir != "" {
			wo.stateDir = filepath.Join(o.stateDir, fmt.Sprintf("worker-%d", i))
		}
		cmd := exec.Command(self, append([]string{"worker"}, wo.argv()...)...)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Start(); err != nil {
			return err
		}
		children = append(children, cmd)
		wg.Add(1)
		go func(i int32, cmd *exec.Cmd) {
			defer wg.Done()
			if err := cmd.Wait(); err != nil {
				failed.Store(true)
				fmt.Fprintf(os.Stderr, "kstreams-bench-go: worker %d: %v\n", i, err)
			}
		}(i, cmd)
	}
	phase("workers started")
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-sig:
		for _, c := range children {
			_ = c.Process.Signal(syscall.SIGTERM)
		}
		<-done
	}
	if failed.Load() {
		return errors.New("a worker failed")
	}
	return nil
}

// prepareChangelog creates the store's changelog topic (the library does not)
// and writes one tombstone for an unused key into each of its partitions.
func prepareChangelog(ctx context.Context, brokers []string, adm *kadm.Client, topic string, partitions int32) error {
	compact := "compact"
	resp, err := adm.CreateTopic(ctx, partitions, 1, map[string]*string{"cleanup.policy": &compact}, topic)
	if err != nil {
		return fmt.Errorf("creating %s: %w", topic, err)
	}
	if resp.Err != nil && !errors.Is(resp.Err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("creating %s: %w", topic, resp.Err)
	}
	producer, err := kgo.NewClient(kgo.SeedBrokers(brokers...),
		kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		return err
	}
	defer producer.Close()
	records := make([]*kgo.Record, 0, partitions)
	for p := int32(0); p < partitions; p++ {
		records = append(records, &kgo.Record{Topic: topic, Partition: p, Key: []byte("__kstreams-bench-go-unused__")})
	}
	if err := producer.ProduceSync(ctx, records...).FirstErr(); err != nil {
		return fmt.Errorf("writing the tombstones to %s: %w", topic, err)
	}
	return nil
}
