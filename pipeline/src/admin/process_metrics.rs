//! `/metrics`, `/health` and `/ready` of a process that runs one part alone (a participant, the
//! projector, the order API), on `http.metrics_port` (0: any free port). When
//! `http.metrics_targets_dir` is set, the process announces itself to Prometheus' file-based
//! discovery as `<dir>/<part>-<pid>.json`, and removes the file when it stops.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::json;

/// Serves until the future is dropped or the listener fails.
pub async fn serve_process_metrics(bind: IpAddr, port: u16, targets_dir: Option<&Path>, part: &str) -> Result<()> {
    let listener = tokio::net::TcpListener::bind((bind, port))
        .await
        .with_context(|| format!("metrics endpoint of {part}: cannot listen on {bind}:{port}"))?;
    let address = listener.local_addr().context("metrics endpoint: its own address")?;
    tracing::info!(%address, part, "metrics endpoint listening");
    let _announced = targets_dir.map(|dir| TargetFile::write(dir, part, address)).transpose()?;
    axum::serve(listener, super::routes()).await.context("metrics endpoint stopped")
}

/// A file-based discovery entry, deleted when dropped.
struct TargetFile {
    path: PathBuf,
}

impl TargetFile {
    fn write(dir: &Path, part: &str, address: SocketAddr) -> Result<Self> {
        let host = if address.ip().is_unspecified() { IpAddr::V4(Ipv4Addr::LOCALHOST) } else { address.ip() };
        let target = SocketAddr::new(host, address.port()).to_string();
        let body = json!([{ "targets": [target], "labels": { "part": part } }]).to_string();
        let path = dir.join(format!("{part}-{}.json", std::process::id()));
        // Written aside, then renamed: Prometheus must never read half a file.
        let partial = path.with_extension("json.partial");
        std::fs::write(&partial, body).and_then(|()| std::fs::rename(&partial, &path)).with_context(|| {
            format!("announcing the metrics endpoint in {} (http.metrics_targets_dir)", dir.display())
        })?;
        Ok(TargetFile { path })
    }
}

impl Drop for TargetFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_part_alone_serves_its_metrics_and_is_announced_until_it_stops() {
        let dir = std::env::temp_dir().join(format!("metrics-targets-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let served_dir = dir.clone();
        let server = tokio::spawn(async move {
            serve_process_metrics(IpAddr::V4(Ipv4Addr::LOCALHOST), 0, Some(&served_dir), "payment").await
        });
        let file = dir.join(format!("payment-{}.json", std::process::id()));
        let mut waited = Duration::ZERO;
        while !file.exists() {
            assert!(waited < Duration::from_secs(10), "no target file in {}", dir.display());
            tokio::time::sleep(Duration::from_millis(20)).await;
            waited += Duration::from_millis(20);
        }
        let entries: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        assert_eq!(entries[0]["labels"]["part"], "payment");
        let target = entries[0]["targets"][0].as_str().unwrap().to_string();

        let response = reqwest::get(format!("http://{target}/metrics")).await.expect("the announced target answers");
        assert_eq!(response.status(), 200);
        assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));

        server.abort();
        let _ = server.await;
        assert!(!file.exists(), "a stopped process is no target any more");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
