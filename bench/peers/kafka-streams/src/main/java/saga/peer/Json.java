package saga.peer;

import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.apache.kafka.common.errors.SerializationException;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;

/** JSON serdes for the stores and the repartition topic, as our JsonSerde. */
final class Json {
    private static final ObjectMapper MAPPER =
            new ObjectMapper().configure(DeserializationFeature.FAIL_ON_UNKNOWN_PROPERTIES, false);

    static <T> Serde<T> serde(Class<T> type) {
        return Serdes.serdeFrom(
                (topic, value) -> {
                    try {
                        return value == null ? null : MAPPER.writeValueAsBytes(value);
                    } catch (Exception e) {
                        throw new SerializationException(e);
                    }
                },
                (topic, bytes) -> {
                    try {
                        return bytes == null ? null : MAPPER.readValue(bytes, type);
                    } catch (Exception e) {
                        throw new SerializationException(e);
                    }
                });
    }

    private Json() {}
}
