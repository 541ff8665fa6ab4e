//! A relay between one host and the engine, so that the benchmark can cut that host's link and restore
//! it (as the test harness's `EngineLink` does). It listens on `<its dir>/.s.PGSQL.<port>` and forwards
//! each connection to the cluster's socket byte for byte, a thread per direction. [`Relay::cut`] closes
//! every relayed connection at once and closes each new one as soon as it is accepted, until
//! [`Relay::restore`].

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use anyhow::{Context, Result};

use super::cluster::{set_mode, socket_path};

struct State {
    target: PathBuf,
    cut: AtomicBool,
    /// Both sides of each open connection, by a number of the relay's own.
    connections: Mutex<HashMap<u64, [UnixStream; 2]>>,
    next_id: AtomicU64,
    closing: AtomicBool,
}

impl State {
    fn connections(&self) -> MutexGuard<'_, HashMap<u64, [UnixStream; 2]>> {
        self.connections.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn close_all(&self) {
        for (_, sockets) in self.connections().drain() {
            for socket in sockets {
                let _ = socket.shutdown(Shutdown::Both);
            }
        }
    }

    fn admit(self: &Arc<Self>, client: UnixStream) {
        // Deciding under the table's lock, so that a cut cannot slip in between.
        let mut connections = self.connections();
        if self.cut.load(Ordering::SeqCst) {
            let _ = client.shutdown(Shutdown::Both);
            return;
        }
        let Ok(server) = UnixStream::connect(&self.target) else {
            let _ = client.shutdown(Shutdown::Both);
            return;
        };
        let (Ok(client2), Ok(server2), Ok(client3), Ok(server3)) =
            (client.try_clone(), server.try_clone(), client.try_clone(), server.try_clone())
        else {
            return;
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        connections.insert(id, [client, server]);
        self.pump(id, client2, server2);
        self.pump(id, server3, client3);
    }

    fn pump(self: &Arc<Self>, id: u64, mut from: UnixStream, mut to: UnixStream) {
        let state = Arc::clone(self);
        std::thread::spawn(move || {
            let mut buffer = [0u8; 16 * 1024];
            loop {
                match from.read(&mut buffer) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if to.write_all(&buffer[..n]).is_err() {
                            break;
                        }
                    }
                }
            }
            let _ = from.shutdown(Shutdown::Both);
            let _ = to.shutdown(Shutdown::Both);
            state.connections().remove(&id);
        });
    }
}

/// A relay to the cluster socket `target`.
pub struct Relay {
    socket: PathBuf,
    dir: PathBuf,
    state: Arc<State>,
    accept: Option<JoinHandle<()>>,
}

impl Relay {
    /// Listens in `dir` (created) under the port number `port` and forwards to `target`.
    pub fn start(dir: &Path, port: u16, target: PathBuf) -> Result<Relay> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        set_mode(dir, 0o755)?;
        let socket = socket_path(dir, port);
        let _ = std::fs::remove_file(&socket);
        let listener = UnixListener::bind(&socket).with_context(|| format!("binding {}", socket.display()))?;
        set_mode(&socket, 0o777)?;
        let state = Arc::new(State {
            target,
            cut: AtomicBool::new(false),
            connections: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            closing: AtomicBool::new(false),
        });
        let accept_state = Arc::clone(&state);
        let accept = std::thread::spawn(move || {
            for client in listener.incoming() {
                if accept_state.closing.load(Ordering::SeqCst) {
                    return;
                }
                if let Ok(client) = client {
                    accept_state.admit(client);
                }
            }
        });
        Ok(Relay { socket, dir: dir.to_owned(), state, accept: Some(accept) })
    }

    /// The directory of the relay's socket (a connection string's `host`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Closes every relayed connection and refuses new ones until [`Relay::restore`].
    pub fn cut(&self) {
        self.state.cut.store(true, Ordering::SeqCst);
        self.state.close_all();
    }

    /// Forwards new connections again.
    pub fn restore(&self) {
        self.state.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.state.closing.store(true, Ordering::SeqCst);
        let woken = UnixStream::connect(&self.socket).is_ok();
        if let Some(thread) = self.accept.take() {
            if woken {
                let _ = thread.join();
            }
        }
        self.state.close_all();
    }
}
