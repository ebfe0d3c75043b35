use super::{driver, pair, TestResult, APP};
use crate::dsl::{Consumed, Materialized, Produced, StreamsBuilder};
use crate::serdes::{NullableSerde, StringSerde};
use crate::test_driver::TopologyTestDriver;

fn users_and_clicks(
    builder: &StreamsBuilder,
) -> (crate::dsl::KTable<String, String>, crate::dsl::KStream<String, String>) {
    let users = builder.table("users", Consumed::with(StringSerde, StringSerde), Materialized::as_store("users"));
    let clicks = builder.stream("clicks", Consumed::with(StringSerde, StringSerde));
    (users, clicks)
}

#[test]
fn inner_join_joins_with_the_current_table_value_and_drops_misses() -> TestResult {
    let builder = StreamsBuilder::new();
    let (users, clicks) = users_and_clicks(&builder);
    clicks
        .join(&users, |page, name| format!("{name} viewed {page}"))
        .to("out", Produced::with(StringSerde, StringSerde));
    let topology = builder.build(APP);
    assert_eq!(topology.subtopology_count(), 1);
    assert_eq!(topology.subtopology_of("users"), topology.subtopology_of("clicks"));

    let driver = TopologyTestDriver::new(topology);
    let users = driver.create_input_topic("users", StringSerde, NullableSerde(StringSerde));
    let clicks = driver.create_input_topic("clicks", StringSerde, StringSerde);
    clicks.pipe_input("u1", "/home")?;
    users.pipe_input("u1", Some("ann".to_owned()))?;
    clicks.pipe_input("u1", "/cart")?;
    users.pipe_input("u1", Some("anna".to_owned()))?;
    clicks.pipe_input("u1", "/pay")?;
    users.pipe_input("u1", None::<String>)?;
    clicks.pipe_input("u1", "/bye")?;
    let output = driver.create_output_topic("out", StringSerde, StringSerde);
    assert_eq!(output.read_key_values_to_vec()?, vec![pair("u1", "ann viewed /cart"), pair("u1", "anna viewed /pay")]);
    Ok(())
}

#[test]
fn left_join_joins_every_record() -> TestResult {
    let builder = StreamsBuilder::new();
    let (users, clicks) = users_and_clicks(&builder);
    clicks
        .left_join(&users, |page, name: Option<String>| {
            format!("{} viewed {page}", name.unwrap_or_else(|| "someone".to_owned()))
        })
        .to("out", Produced::with(StringSerde, StringSerde));
    let driver = driver(builder);
    let clicks = driver.create_input_topic("clicks", StringSerde, StringSerde);
    clicks.pipe_input("u1", "/home")?;
    driver.create_input_topic("users", StringSerde, StringSerde).pipe_input("u1", "ann")?;
    clicks.pipe_input("u1", "/cart")?;
    let output = driver.create_output_topic("out", StringSerde, StringSerde);
    assert_eq!(
        output.read_key_values_to_vec()?,
        vec![pair("u1", "someone viewed /home"), pair("u1", "ann viewed /cart")]
    );
    Ok(())
}

#[test]
fn join_reads_a_derived_table_through_its_source_store() -> TestResult {
    let builder = StreamsBuilder::new();
    let (users, clicks) = users_and_clicks(&builder);
    let admins = users
        .filter(|_, name| name.starts_with("admin-"))
        .map_values(|name| name.trim_start_matches("admin-").to_owned());
    clicks.join(&admins, |page, name| format!("{name}:{page}")).to("out", Produced::with(StringSerde, StringSerde));
    let driver = driver(builder);
    driver
        .create_input_topic("users", StringSerde, StringSerde)
        .pipe_key_values([pair("u1", "admin-ann"), pair("u2", "bob")])?;
    driver
        .create_input_topic("clicks", StringSerde, StringSerde)
        .pipe_key_values([pair("u1", "/a"), pair("u2", "/b")])?;
    let output = driver.create_output_topic("out", StringSerde, StringSerde);
    assert_eq!(output.read_key_values_to_vec()?, vec![pair("u1", "ann:/a")]);
    Ok(())
}

#[test]
fn join_after_a_key_change_repartitions_the_stream() -> TestResult {
    let builder = StreamsBuilder::new();
    let (users, clicks) = users_and_clicks(&builder);
    clicks
        .select_key(|_, value| value.clone())
        .join(&users, |_, name| name)
        .to("out", Produced::with(StringSerde, StringSerde));
    let topology = builder.build(APP);
    assert_eq!(topology.repartition_topics(), vec!["app-KSTREAM-JOIN-0000000003-repartition".to_owned()]);
    assert_eq!(topology.subtopology_of("users"), topology.subtopology_of("app-KSTREAM-JOIN-0000000003-repartition"));
    assert_ne!(topology.subtopology_of("users"), topology.subtopology_of("clicks"));

    let driver = TopologyTestDriver::new(topology);
    driver.create_input_topic("users", StringSerde, StringSerde).pipe_input("u1", "ann")?;
    driver.create_input_topic("clicks", StringSerde, StringSerde).pipe_input("session-9", "u1")?;
    assert_eq!(driver.create_output_topic("out", StringSerde, StringSerde).read_key_value()?, pair("u1", "ann"));
    Ok(())
}
