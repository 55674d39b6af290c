//! Test support: the yubihsm crate's mock HSM behind its HTTP connector protocol, so that
//! several processes share one (in-memory) device. `keyrack-yubihsm-mock PORT` prints
//! `listening on 127.0.0.1:PORT` once it accepts connections, and serves until killed.
#![forbid(unsafe_code)]

use yubihsm::connector::http::Server;
use yubihsm::{Connector, HttpConfig};

fn main() -> anyhow::Result<()> {
    let port: u16 = std::env::args()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("usage: keyrack-yubihsm-mock PORT"))?
        .parse()?;
    let config = HttpConfig {
        addr: "127.0.0.1".into(),
        port,
        timeout_ms: 5000,
    };
    let server = Server::new(&config, Connector::mockhsm())?;
    println!("listening on 127.0.0.1:{port}");
    server.run()?;
    Ok(())
}
