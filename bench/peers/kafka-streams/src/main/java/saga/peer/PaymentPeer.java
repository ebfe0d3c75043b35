package saga.peer;

import java.nio.file.Files;
import java.time.Duration;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;

import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.Repartitioned;
import org.apache.kafka.streams.state.Stores;

/**
 * Our payment participant (pipeline/src/participants/payment) written as a Kafka Streams user
 * would: the order ledger keyed by order, balance requests repartitioned by customer, the
 * balances, replies to the payment topic, which the ledger reads back. Same stores, same
 * changelogs, same JSON state, same Avro on the wire.
 *
 * <p>Usage: PaymentPeer --bootstrap H:P --registry URL --application-id ID --order-topic T
 * --inventory-topic T --payment-topic T [--threads N] [--default-balance-cents C]
 */
public final class PaymentPeer {
    static final String ORDERS_STORE = "orders";
    static final String LIFECYCLE_STORE = "order-lifecycles";
    static final String BALANCES_STORE = "balances";
    static final String APPLIED_STORE = "applied-requests";
    /** Our retention's default grace period: applied requests older than this are forgotten. */
    static final Duration GRACE = Duration.ofDays(7);

    public static void main(String[] args) throws Exception {
        Map<String, String> options = parse(args);
        SagaAvro avro = new SagaAvro(require(options, "--registry"));
        long defaultBalance = Long.parseLong(options.getOrDefault("--default-balance-cents", "0"));
        String paymentTopic = require(options, "--payment-topic");

        Topology topology = topology(avro, defaultBalance, require(options, "--order-topic"),
                require(options, "--inventory-topic"), paymentTopic);
        KafkaStreams streams = new KafkaStreams(topology, config(options));
        CountDownLatch stopped = new CountDownLatch(1);
        streams.setStateListener((now, before) -> {
            System.out.println("state " + before + " -> " + now);
            if (now == KafkaStreams.State.ERROR || now == KafkaStreams.State.NOT_RUNNING) {
                stopped.countDown();
            }
        });
        Runtime.getRuntime().addShutdownHook(new Thread(streams::close));
        streams.start();
        stopped.await();
    }

    static Topology topology(SagaAvro avro, long defaultBalance, String orderTopic, String inventoryTopic, String paymentTopic) {
        StreamsBuilder builder = new StreamsBuilder();
        builder.addStateStore(Stores.keyValueStoreBuilder(Stores.inMemoryKeyValueStore(ORDERS_STORE),
                Serdes.String(), Json.serde(State.OrderPayment.class)));
        builder.addStateStore(Stores.keyValueStoreBuilder(Stores.inMemoryKeyValueStore(LIFECYCLE_STORE),
                Serdes.String(), Json.serde(State.Lifecycle.class)));
        builder.addStateStore(Stores.keyValueStoreBuilder(Stores.inMemoryKeyValueStore(BALANCES_STORE),
                Serdes.String(), Json.serde(State.CustomerBalance.class)));
        // What each (order, command) came to. Not an in-memory window store: its fetch walks
        // every timestamp in the range, so each lookup would cost O(requests in the grace period).
        builder.addStateStore(Stores.keyValueStoreBuilder(Stores.inMemoryKeyValueStore(APPLIED_STORE),
                Serdes.String(), Json.serde(State.Applied.class)));

        builder.stream(List.of(orderTopic, inventoryTopic, paymentTopic), Consumed.with(Serdes.String(), avro.serde()))
                .process(OrderLedger::new, ORDERS_STORE, LIFECYCLE_STORE)
                .repartition(Repartitioned.with(Serdes.String(), Json.serde(State.BalanceRequest.class)).withName("balance-requests"))
                .process(() -> new Balances(avro, defaultBalance), BALANCES_STORE, APPLIED_STORE)
                .to(paymentTopic, Produced.with(Serdes.String(), avro.serde()));
        return builder.build();
    }

    /** exactly_once_v2 with Kafka Streams' defaults otherwise; one stream thread per core. */
    static Properties config(Map<String, String> options) throws Exception {
        Properties props = new Properties();
        props.put(StreamsConfig.APPLICATION_ID_CONFIG, require(options, "--application-id"));
        props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, require(options, "--bootstrap"));
        props.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
        props.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG,
                options.getOrDefault("--threads", String.valueOf(Runtime.getRuntime().availableProcessors())));
        // The default under exactly_once_v2, stated because ours runs with the same.
        props.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, "100");
        props.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, String.valueOf(10L * 1024 * 1024));
        props.put(StreamsConfig.STATE_DIR_CONFIG, Files.createTempDirectory("payment-peer").toString());
        props.put(StreamsConfig.consumerPrefix("auto.offset.reset"), "earliest");
        return props;
    }

    private static Map<String, String> parse(String[] args) {
        Map<String, String> options = new HashMap<>();
        for (int i = 0; i + 1 < args.length; i += 2) {
            options.put(args[i], args[i + 1]);
        }
        if (args.length % 2 != 0) {
            throw new IllegalArgumentException("every option needs a value: " + String.join(" ", args));
        }
        return options;
    }

    private static String require(Map<String, String> options, String name) {
        String value = options.get(name);
        if (value == null) {
            throw new IllegalArgumentException(name + " is required");
        }
        return value;
    }

    private PaymentPeer() {}
}
