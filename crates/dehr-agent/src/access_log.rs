//! Reading an identity's access log from each of its nodes, and checking it: the hash chain
//! recomputed here (the node's own check is reported too, but not relied on), and the head seen
//! last time (kept in the vault) still there with the same hash, so entries altered, removed or
//! cut off the end are reported.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::agent::{Agent, AgentError};

/// The newest entry of a node's log an agent has seen for one of its identities.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogHead {
    pub did: String,
    pub node: String,
    pub seq: u64,
    pub hash: String,
}

/// One entry as read.
#[derive(Clone, Debug)]
pub struct LogEntry {
    pub seq: u64,
    /// `{time, actor, interface, method, status, protocol?, protocolPath?, recordIds?,
    /// permissionGrantId?, …}`.
    pub entry: Value,
}

/// One node's log of one identity.
#[derive(Clone, Debug)]
pub struct NodeLog {
    pub node: String,
    pub entries: Vec<LogEntry>,
    /// What is wrong with it, in words; empty when the chain checks out.
    pub problems: Vec<String>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks entries read from the start against their hashes and the previously seen head.
fn check(
    entries: &[Value],
    seen: Option<&LogHead>,
) -> (Vec<LogEntry>, Vec<String>, Option<(u64, String)>) {
    let mut problems = Vec::new();
    let mut out = Vec::new();
    let mut previous = [0u8; 32];
    let mut expected = 1u64;
    let mut head = None;
    for item in entries {
        let seq = item.get("seq").and_then(Value::as_u64).unwrap_or(0);
        let bytes = item
            .get("entryBytes")
            .and_then(Value::as_str)
            .and_then(|b| dehr_core::encoding::b64url_decode(b).ok())
            .unwrap_or_default();
        let hash = item
            .get("hash")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if seq != expected {
            problems.push(format!("entry {expected} is missing (next is {seq})"));
        }
        let computed = dehr_core::chain::access_log_hash(&previous, seq, &bytes);
        if hex(&computed) != hash {
            problems.push(format!(
                "entry {seq} was altered: its hash does not follow the chain"
            ));
        }
        if let Some(seen) = seen
            && seen.seq == seq
            && seen.hash != hash
        {
            problems.push(format!("entry {seq} differs from when it was last read"));
        }
        previous = computed;
        expected = seq + 1;
        let entry = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        out.push(LogEntry { seq, entry });
        head = Some((seq, hash));
    }
    if let Some(seen) = seen
        && head.as_ref().is_none_or(|(seq, _)| *seq < seen.seq)
    {
        problems.push(format!(
            "entries up to {} were read before, but the log now ends at {}: entries were removed",
            seen.seq,
            head.as_ref().map_or(0, |(seq, _)| *seq)
        ));
    }
    (out, problems, head)
}

impl Agent {
    /// Reads and checks `who`'s access log on each of its nodes, and remembers each head.
    pub async fn access_log(&mut self, who: &str) -> Result<Vec<NodeLog>, AgentError> {
        let identity = self.identity(who)?.clone();
        let signer = identity.keys.signer(&identity.did)?;
        let mut logs = Vec::new();
        for node in &identity.nodes {
            let mut items: Vec<Value> = Vec::new();
            let mut node_problems = Vec::new();
            let mut after = 0u64;
            loop {
                let message = dehr_dwn::builders::access_log_read(Some(after), None, &signer)
                    .map_err(|e| AgentError::Message(e.to_string()))?;
                let reply = match self
                    .client()
                    .send_to(node, &identity.did, &message, None)
                    .await
                {
                    Ok(reply) => reply,
                    Err(e) => {
                        node_problems.push(format!("could not read the log: {e}"));
                        break;
                    }
                };
                if !reply.is_success() {
                    node_problems.push(format!(
                        "the node refused to give the log: {} {}",
                        reply.status, reply.detail
                    ));
                    break;
                }
                if after == 0 && reply.body.pointer("/chain/valid") == Some(&Value::Bool(false)) {
                    node_problems.push(format!(
                        "the node reports its log broken at entry {}",
                        reply
                            .body
                            .pointer("/chain/brokenAt")
                            .unwrap_or(&Value::Null)
                    ));
                }
                let page = reply
                    .body
                    .get("entries")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                let Some(last) = page
                    .last()
                    .and_then(|e| e.get("seq"))
                    .and_then(Value::as_u64)
                else {
                    break;
                };
                let full = page.len() >= dehr_dwn::access_log::MAX_READ;
                items.extend(page);
                if !full {
                    break;
                }
                after = last;
            }
            let seen = self
                .vault()
                .contents()
                .log_heads
                .iter()
                .find(|h| h.did == identity.did && h.node == *node)
                .cloned();
            let (entries, mut problems, head) = check(&items, seen.as_ref());
            problems.extend(node_problems);
            if let Some((seq, hash)) = head
                && problems.is_empty()
            {
                let heads = &mut self.vault_mut().contents_mut().log_heads;
                heads.retain(|h| !(h.did == identity.did && h.node == *node));
                heads.push(LogHead {
                    did: identity.did.clone(),
                    node: node.clone(),
                    seq,
                    hash,
                });
            }
            logs.push(NodeLog {
                node: node.clone(),
                entries,
                problems,
            });
        }
        self.vault().save()?;
        Ok(logs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(seq: u64, entry: &[u8], previous: &[u8; 32]) -> (Value, [u8; 32]) {
        let hash = dehr_core::chain::access_log_hash(previous, seq, entry);
        (
            serde_json::json!({
                "seq": seq,
                "entryBytes": dehr_core::encoding::b64url_encode(entry),
                "hash": hex(&hash),
            }),
            hash,
        )
    }

    #[test]
    fn the_chain_catches_alteration_removal_and_truncation() {
        let (a, ha) = item(1, br#"{"m":1}"#, &[0; 32]);
        let (b, hb) = item(2, br#"{"m":2}"#, &ha);
        let (c, _) = item(3, br#"{"m":3}"#, &hb);
        let (_, problems, head) = check(&[a.clone(), b.clone(), c.clone()], None);
        assert!(problems.is_empty(), "{problems:?}");
        let head = head.unwrap_or_default();
        assert_eq!(head.0, 3);

        let mut altered = b.clone();
        altered["entryBytes"] = Value::String(dehr_core::encoding::b64url_encode(br#"{"m":9}"#));
        let (_, problems, _) = check(&[a.clone(), altered, c.clone()], None);
        assert!(
            problems.iter().any(|p| p.contains("entry 2 was altered")),
            "{problems:?}"
        );

        let (_, problems, _) = check(&[a.clone(), c.clone()], None);
        assert!(
            problems.iter().any(|p| p.contains("entry 2 is missing")),
            "{problems:?}"
        );

        let seen = LogHead {
            did: "d".into(),
            node: "n".into(),
            seq: 3,
            hash: head.1,
        };
        let (_, problems, _) = check(&[a, b], Some(&seen));
        assert!(
            problems.iter().any(|p| p.contains("removed")),
            "{problems:?}"
        );
    }
}
