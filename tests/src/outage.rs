//! A TCP relay in front of a stack service that a test can take down and bring back, for the
//! outages a real server cannot be told to have while other tests share it.

use std::sync::Arc;

use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Relays 127.0.0.1:`port()` to the upstream port while up; while down, every connection is
/// closed as soon as it is accepted and the open ones are cut.
pub struct Outage {
    port: u16,
    up: Arc<watch::Sender<bool>>,
}

impl Outage {
    /// A relay to `upstream`, starting down.
    pub async fn down_in_front_of(upstream: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding the outage relay");
        let port = listener.local_addr().expect("relay address").port();
        let (up, _) = watch::channel(false);
        let up = Arc::new(up);
        let relay = up.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let mut state = relay.subscribe();
                if !*state.borrow() {
                    continue;
                }
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(("127.0.0.1", upstream)).await else { return };
                    let mut client = client;
                    tokio::select! {
                        _ = copy_bidirectional(&mut client, &mut server) => {}
                        _ = state.wait_for(|up| !up) => {}
                    }
                });
            }
        });
        Outage { port, up }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn bring_up(&self) {
        self.up.send_replace(true);
    }
}
