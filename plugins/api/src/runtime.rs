//! Running a blocking protocol on its own thread, fed from async code.
//!
//! [`spawn_protocol`] starts the protocol on a dedicated OS thread and returns a
//! [`ProtocolPort`] (push incoming messages in, stream outgoing ones out — neither blocks) and
//! a future of the result. The protocol's heavy math therefore never holds an async runtime
//! thread, and two sessions never serialise each other on one.

use std::future::Future;
use std::pin::Pin;
use std::sync::mpsc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_channel::{mpsc as amp, oneshot};

use crate::channel::{Channel, ChannelError, Incoming, Outgoing};
use crate::ProtocolError;

thread_local! {
    static PROTOCOL_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Marks the current thread as one that may block on a protocol (a dedicated thread).
pub(crate) fn mark_protocol_thread() {
    PROTOCOL_THREAD.with(|f| f.set(true));
}

/// Whether this thread was started for a protocol, by [`spawn_protocol`] or the simulator.
pub fn on_protocol_thread() -> bool {
    PROTOCOL_THREAD.with(|f| f.get())
}

/// The async side of a running protocol.
pub struct ProtocolPort {
    inbox: Inbox,
    /// Messages the protocol sends, in order; ends when the protocol ends.
    pub outgoing: amp::UnboundedReceiver<Outgoing>,
}

impl ProtocolPort {
    /// Delivers a message to the protocol (never blocks). Returns false once it has ended.
    pub fn deliver(&self, msg: Incoming) -> bool {
        self.inbox.deliver(msg)
    }

    /// Splits the port into its two directions, to drive them from one event loop.
    pub fn into_parts(self) -> (Inbox, amp::UnboundedReceiver<Outgoing>) {
        (self.inbox, self.outgoing)
    }
}

/// The incoming direction of a [`ProtocolPort`]. Dropping it cancels the protocol at its next
/// receive.
pub struct Inbox(mpsc::Sender<Incoming>);

impl Inbox {
    /// Delivers a message to the protocol (never blocks). Returns false once it has ended.
    pub fn deliver(&self, msg: Incoming) -> bool {
        self.0.send(msg).is_ok()
    }
}

/// The result of a protocol running on its thread.
pub struct ProtocolHandle<T> {
    result: oneshot::Receiver<Result<T, ProtocolError>>,
}

impl<T> Future for ProtocolHandle<T> {
    type Output = Result<T, ProtocolError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.result).poll(cx).map(|r| {
            r.unwrap_or_else(|_| {
                Err(ProtocolError::Panicked(
                    "protocol thread ended without a result".into(),
                ))
            })
        })
    }
}

/// A [`Channel`] over in-process queues, with a per-message deadline.
pub struct QueueChannel {
    stashed: std::collections::VecDeque<Incoming>,
    incoming: mpsc::Receiver<Incoming>,
    outgoing: Box<dyn FnMut(Outgoing) -> bool + Send>,
    timeout: Duration,
}

impl QueueChannel {
    /// A channel reading from `incoming` and handing sent messages to `outgoing` (which
    /// returns false when the other side is gone).
    pub fn new(
        incoming: mpsc::Receiver<Incoming>,
        outgoing: Box<dyn FnMut(Outgoing) -> bool + Send>,
        timeout: Duration,
    ) -> Self {
        QueueChannel {
            stashed: Default::default(),
            incoming,
            outgoing,
            timeout,
        }
    }
}

fn refuse_off_protocol_thread() -> Result<(), ChannelError> {
    if on_protocol_thread() {
        Ok(())
    } else {
        Err(ChannelError::Closed(
            "a protocol ran on a thread not made for it (an async runtime's, perhaps): run plugins through keyrack_plugin::runtime::spawn_protocol".into(),
        ))
    }
}

impl Channel for QueueChannel {
    fn send(&mut self, msg: Outgoing) -> Result<(), ChannelError> {
        refuse_off_protocol_thread()?;
        if (self.outgoing)(msg) {
            Ok(())
        } else {
            Err(ChannelError::Closed(
                "the session's transport is gone".into(),
            ))
        }
    }

    fn recv(&mut self) -> Result<Incoming, ChannelError> {
        refuse_off_protocol_thread()?;
        if let Some(m) = self.stashed.pop_front() {
            return Ok(m);
        }
        self.incoming
            .recv_timeout(self.timeout)
            .map_err(|e| match e {
                mpsc::RecvTimeoutError::Timeout => ChannelError::Timeout(self.timeout),
                mpsc::RecvTimeoutError::Disconnected => ChannelError::Cancelled,
            })
    }

    fn stash(&mut self, msg: Incoming) {
        self.stashed.push_back(msg);
    }
}

/// Runs `protocol` on a new thread named `name`; each receive waits at most `timeout`.
/// Dropping the port cancels the protocol at its next receive.
pub fn spawn_protocol<T, F>(
    name: &str,
    timeout: Duration,
    protocol: F,
) -> std::io::Result<(ProtocolPort, ProtocolHandle<T>)>
where
    T: Send + 'static,
    F: FnOnce(&mut dyn Channel) -> Result<T, ProtocolError> + Send + 'static,
{
    let (in_tx, in_rx) = mpsc::channel();
    let (out_tx, out_rx) = amp::unbounded();
    let (res_tx, res_rx) = oneshot::channel();
    let mut channel = QueueChannel::new(
        in_rx,
        Box::new(move |m| out_tx.unbounded_send(m).is_ok()),
        timeout,
    );
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            mark_protocol_thread();
            let result =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| protocol(&mut channel)))
                    .unwrap_or_else(|panic| {
                        let what = panic
                            .downcast_ref::<&str>()
                            .map(|s| s.to_string())
                            .or_else(|| panic.downcast_ref::<String>().cloned())
                            .unwrap_or_else(|| "unknown panic".into());
                        Err(ProtocolError::Panicked(what))
                    });
            let _ = res_tx.send(result);
        })?;
    Ok((
        ProtocolPort {
            inbox: Inbox(in_tx),
            outgoing: out_rx,
        },
        ProtocolHandle { result: res_rx },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::Recipient;

    #[test]
    fn protocol_runs_on_its_own_thread_and_echoes() {
        let (port, handle) = spawn_protocol("echo", Duration::from_secs(5), |ch| {
            let m = ch.recv()?;
            ch.send(Outgoing {
                to: Recipient::Broadcast,
                round: m.round + 1,
                payload: m.payload.clone(),
            })?;
            Ok(std::thread::current().name().map(str::to_owned))
        })
        .unwrap();
        assert!(port.deliver(Incoming {
            from: 1,
            broadcast: true,
            round: 0,
            payload: b"hi".to_vec()
        }));
        let name = futures_executor::block_on(handle).unwrap();
        assert_eq!(name.as_deref(), Some("echo"));
        let mut out = port.outgoing;
        let echoed = out.try_recv().unwrap();
        assert_eq!((echoed.round, echoed.payload.as_slice()), (1, &b"hi"[..]));
    }

    #[test]
    fn a_protocol_channel_refuses_to_block_a_thread_not_made_for_it() {
        let (_tx, rx) = mpsc::channel();
        let mut ch = QueueChannel::new(rx, Box::new(|_| true), Duration::from_secs(5));
        assert!(!on_protocol_thread());
        assert!(matches!(ch.recv(), Err(ChannelError::Closed(e)) if e.contains("spawn_protocol")));
        assert!(ch
            .send(Outgoing {
                to: Recipient::Broadcast,
                round: 0,
                payload: vec![]
            })
            .is_err());
    }

    #[test]
    fn dropping_the_port_cancels() {
        let (port, handle) = spawn_protocol("cancel", Duration::from_secs(30), |ch| {
            ch.recv().map_err(Into::into)
        })
        .unwrap();
        drop(port);
        assert_eq!(
            futures_executor::block_on(handle),
            Err(ProtocolError::Channel(ChannelError::Cancelled))
        );
    }

    #[test]
    fn a_panic_is_an_error_not_a_hang() {
        let (_port, handle) =
            spawn_protocol::<(), _>("panics", Duration::from_secs(5), |_| panic!("boom")).unwrap();
        assert_eq!(
            futures_executor::block_on(handle),
            Err(ProtocolError::Panicked("boom".into()))
        );
    }
}
