//! Embeds every `avro/v<N>/<EventType>.avsc` in the crate: the files are the source of truth, so
//! shipping a version is adding a file. A file outside that layout fails the build.

use std::fmt::Write as _;
use std::path::Path;
use std::{env, fs};

fn main() {
    let root = Path::new(&env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR")).join("avro");
    // A directory here makes cargo rerun this script when anything under it changes.
    println!("cargo:rerun-if-changed={}", root.display());

    let mut files = Vec::new();
    for dir in fs::read_dir(&root).expect("schemas/avro is readable") {
        let dir = dir.expect("schemas/avro is readable").path();
        if !dir.is_dir() {
            continue;
        }
        let dir_name = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        let version: u32 = dir_name
            .strip_prefix('v')
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("schemas/avro/{dir_name}: version directories are named v<N>"));
        for file in fs::read_dir(&dir).expect("a version directory is readable") {
            let file = file.expect("a version directory is readable").path();
            let file_name = file.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
            let event_type = file_name
                .strip_suffix(".avsc")
                .unwrap_or_else(|| panic!("schemas/avro/{dir_name}/{file_name}: only .avsc files belong here"))
                .to_string();
            files.push((event_type, version, format!("{dir_name}/{file_name}"), file));
        }
    }
    files.sort();

    let mut table = String::from("&[\n");
    for (event_type, version, relative, absolute) in files {
        writeln!(
            table,
            "    SchemaFile {{ event_type: {event_type:?}, version: {version}, path: {relative:?}, text: include_str!({:?}) }},",
            absolute.display().to_string()
        )
        .expect("writing to a String");
    }
    table.push(']');
    let out = Path::new(&env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("schema_files.rs");
    fs::write(out, table).expect("OUT_DIR is writable");
}
