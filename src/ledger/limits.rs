//! How large one ledger command may be. Every entry travels in raft appends, snapshots and the
//! follower feed, each one message of at most [`MAX_MESSAGE`] bytes; an entry too large for
//! them never replicates and stalls every write after it. A command is therefore refused before
//! it is proposed (by the proposer, and again by the leader for proposals from other nodes) when
//! its encoding exceeds [`MAX_COMMAND_BYTES`], and raft sends at most [`APPEND_BATCH`] entries
//! per append and snapshots in chunks of [`SNAPSHOT_CHUNK`] bytes, so that any batch of
//! commands within the limit fits one message.

use super::state::Command;
use crate::p2p::protocol::MAX_MESSAGE;

/// The largest encoded command (JSON) the ledger takes: a sealed kubeconfig fits with room.
pub const MAX_COMMAND_BYTES: usize = 64 * 1024;

/// Entries per raft append: a batch of the largest commands stays under the message limit.
pub const APPEND_BATCH: u64 = 12;

/// Bytes of snapshot per chunk: JSON writes each byte as up to four characters, so a chunk
/// stays under the message limit.
pub const SNAPSHOT_CHUNK: usize = 192 * 1024;

// A full batch of the largest commands, and a snapshot chunk, fit one message with room for
// the request around them.
const _: () = assert!(APPEND_BATCH as usize * MAX_COMMAND_BYTES + 64 * 1024 < MAX_MESSAGE);
const _: () = assert!(SNAPSHOT_CHUNK * 4 + 64 * 1024 < MAX_MESSAGE);

/// Refuses `command` when its encoding is larger than [`MAX_COMMAND_BYTES`], saying so. A
/// `Recover` carries a whole state by design and is exempt: only the recovering node proposes
/// it, to itself as the only voter (the leader refuses it from others, [`super::authority`]).
pub fn check_size(command: &Command) -> Result<(), String> {
    if matches!(command, Command::Recover { .. }) {
        return Ok(());
    }
    let size = serde_json::to_vec(command).map_or(usize::MAX, |bytes| bytes.len());
    if size > MAX_COMMAND_BYTES {
        return Err(format!(
            "the command takes {size} bytes encoded; the ledger takes at most \
             {MAX_COMMAND_BYTES} bytes per write (keep large data outside the ledger)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(value: String) -> Command {
        Command::KvPut {
            bucket: "b".into(),
            key: "k".into(),
            value,
        }
    }

    #[test]
    fn a_recovery_seed_of_any_size_passes() {
        let mut state = crate::ledger::state::LedgerState::new("10.1.0.0/24".parse().unwrap());
        for i in 0..2000 {
            state.apply(
                i + 1,
                &Command::KvPut {
                    bucket: "b".into(),
                    key: format!("key {i}"),
                    value: "x".repeat(64),
                },
            );
        }
        let recover = Command::Recover {
            cluster: crate::ledger::state::ClusterId {
                created_at: 1,
                id: 2,
            },
            state: Box::new(state),
        };
        assert!(serde_json::to_vec(&recover).unwrap().len() > MAX_COMMAND_BYTES);
        assert!(check_size(&recover).is_ok());
    }

    #[test]
    fn commands_up_to_the_limit_pass_and_larger_ones_are_refused_naming_it() {
        assert!(check_size(&put("x".repeat(MAX_COMMAND_BYTES - 100))).is_ok());
        let refusal = check_size(&put("x".repeat(MAX_COMMAND_BYTES))).unwrap_err();
        assert!(refusal.contains("at most 65536 bytes"), "{refusal}");
        // Escaped characters count as encoded: six bytes each.
        assert!(check_size(&put("\u{1}".repeat(MAX_COMMAND_BYTES / 4))).is_err());
    }
}
