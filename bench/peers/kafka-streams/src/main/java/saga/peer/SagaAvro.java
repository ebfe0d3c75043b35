package saga.peer;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.ByteBuffer;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.apache.avro.Schema;
import org.apache.avro.generic.GenericDatumReader;
import org.apache.avro.generic.GenericDatumWriter;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.io.BinaryEncoder;
import org.apache.avro.io.DecoderFactory;
import org.apache.avro.io.EncoderFactory;
import org.apache.kafka.common.errors.SerializationException;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;

/**
 * Saga events in the Confluent wire format (magic 0, a 4-byte schema id, the Avro body), with
 * schemas from the registry's Confluent-compatible API: what Confluent's KafkaAvroSerde does,
 * which is not on Maven Central.
 */
final class SagaAvro {
    private static final ObjectMapper MAPPER = new ObjectMapper();
    private final HttpClient http = HttpClient.newHttpClient();
    private final String api;
    private final Map<Integer, GenericDatumReader<GenericRecord>> readers = new ConcurrentHashMap<>();
    /** Latest schema id and schema by record full name, for the events the peer writes. */
    private final Map<String, Map.Entry<Integer, Schema>> writers = new ConcurrentHashMap<>();

    SagaAvro(String registryUrl) {
        this.api = registryUrl.replaceAll("/+$", "") + "/apis/ccompat/v7";
    }

    /** The writer schema of `fullName` (e.g. saga.events.PaymentCompleted), registered on `topic`'s subject. */
    Schema schemaOf(String topic, String fullName) {
        return writer(topic, fullName).getValue();
    }

    private Map.Entry<Integer, Schema> writer(String topic, String fullName) {
        return writers.computeIfAbsent(fullName, name -> {
            JsonNode latest = get("/subjects/" + topic + "-" + name + "/versions/latest");
            return Map.entry(latest.get("id").asInt(), new Schema.Parser().parse(latest.get("schema").asText()));
        });
    }

    Serde<GenericRecord> serde() {
        return Serdes.serdeFrom((topic, record) -> record == null ? null : encode(record), (topic, bytes) -> bytes == null ? null : decode(bytes));
    }

    private byte[] encode(GenericRecord record) {
        int id = writer(SagaTopics.canonical(record.getSchema().getName()), record.getSchema().getFullName()).getKey();
        try {
            ByteArrayOutputStream out = new ByteArrayOutputStream(128);
            out.write(0);
            out.write(ByteBuffer.allocate(4).putInt(id).array());
            BinaryEncoder encoder = EncoderFactory.get().binaryEncoder(out, null);
            new GenericDatumWriter<GenericRecord>(record.getSchema()).write(record, encoder);
            encoder.flush();
            return out.toByteArray();
        } catch (IOException e) {
            throw new SerializationException(e);
        }
    }

    private GenericRecord decode(byte[] bytes) {
        if (bytes.length < 5 || bytes[0] != 0) {
            throw new SerializationException("not in the Confluent wire format");
        }
        int id = ByteBuffer.wrap(bytes, 1, 4).getInt();
        GenericDatumReader<GenericRecord> reader = readers.computeIfAbsent(id,
                key -> new GenericDatumReader<>(new Schema.Parser().parse(get("/schemas/ids/" + key).get("schema").asText())));
        try {
            return reader.read(null, DecoderFactory.get().binaryDecoder(bytes, 5, bytes.length - 5, null));
        } catch (IOException e) {
            throw new SerializationException("schema id " + id + ": " + e.getMessage(), e);
        }
    }

    private JsonNode get(String path) {
        try {
            HttpResponse<String> response = http.send(HttpRequest.newBuilder(URI.create(api + path)).GET().build(),
                    HttpResponse.BodyHandlers.ofString());
            if (response.statusCode() != 200) {
                throw new SerializationException("registry " + path + ": HTTP " + response.statusCode() + " " + response.body());
            }
            return MAPPER.readTree(response.body());
        } catch (IOException e) {
            throw new SerializationException("registry " + path, e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new SerializationException("registry " + path, e);
        }
    }
}
