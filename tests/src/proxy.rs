//! A TCP proxy on loopback that can black-hole its connections: they stay
//! open, but nothing crosses them any more, as when a network drops a
//! host's packets or a load balancer forgets a flow. No error reaches
//! either side; only timeouts tell.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

struct State {
    target: AtomicU16,
    /// Whether connections accepted from now on are silent.
    silent_new: AtomicBool,
    /// The silence flag of every connection accepted so far.
    connections: Mutex<Vec<Arc<AtomicBool>>>,
    stop: AtomicBool,
}

/// Forwards `127.0.0.1:{port}` to `127.0.0.1:{target}`. Stopped on drop.
pub struct Proxy {
    port: u16,
    state: Arc<State>,
}

impl Proxy {
    /// Starts forwarding to `target`.
    pub fn start(target: u16) -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("cannot bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let state = Arc::new(State {
            target: AtomicU16::new(target),
            silent_new: AtomicBool::new(false),
            connections: Mutex::default(),
            stop: AtomicBool::new(false),
        });
        let accepting = state.clone();
        thread::spawn(move || {
            for client in listener.incoming() {
                if accepting.stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let silent = Arc::new(AtomicBool::new(accepting.silent_new.load(Ordering::SeqCst)));
                accepting.connections.lock().unwrap().push(silent.clone());
                let target = accepting.target.load(Ordering::SeqCst);
                let Ok(server) = TcpStream::connect((Ipv4Addr::LOCALHOST, target)) else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                for (from, to) in [
                    (client.try_clone(), server.try_clone()),
                    (server.try_clone(), client.try_clone()),
                ] {
                    let (Ok(from), Ok(to)) = (from, to) else {
                        continue;
                    };
                    let (silent, state) = (silent.clone(), accepting.clone());
                    thread::spawn(move || pump(from, to, &silent, &state));
                }
            }
        });
        Proxy { port, state }
    }

    /// `redis://127.0.0.1:{port}/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Every connection open now goes silent for good, and so do new ones
    /// until [`forward_new_to`](Self::forward_new_to).
    pub fn black_hole(&self) {
        self.state.silent_new.store(true, Ordering::SeqCst);
        for silent in self.state.connections.lock().unwrap().iter() {
            silent.store(true, Ordering::SeqCst);
        }
    }

    /// New connections go to `target` and are forwarded; silent ones stay
    /// silent.
    pub fn forward_new_to(&self, target: u16) {
        self.state.target.store(target, Ordering::SeqCst);
        self.state.silent_new.store(false, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        // Wakes the accepting thread so that it sees `stop`.
        let _ = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port));
    }
}

/// Copies `from` to `to` until either closes or the proxy stops; a silent
/// connection's bytes are read and dropped.
fn pump(mut from: TcpStream, mut to: TcpStream, silent: &AtomicBool, state: &State) {
    let _ = from.set_read_timeout(Some(Duration::from_millis(50)));
    let mut buf = [0u8; 16 * 1024];
    while !state.stop.load(Ordering::SeqCst) {
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if !silent.load(Ordering::SeqCst) && to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}
