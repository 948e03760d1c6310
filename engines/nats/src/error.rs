//! The engine's one error type: what failed, and the NATS error beneath it.

/// Why a bus call failed. Every failure is worth retrying once the servers are reachable.
#[derive(Debug, thiserror::Error)]
#[error("NATS: {what}: {source}")]
pub struct BusError {
    what: String,
    #[source]
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl BusError {
    pub(crate) fn new(
        what: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        BusError {
            what: what.into(),
            source: source.into(),
        }
    }
}
