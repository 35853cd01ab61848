//! The CLI's use of the agent's local replica: every command that works on a person's record
//! levels the replica with the person's nodes before it starts (so it sees what others wrote
//! on a node) and after it wrote (so what it wrote reaches the nodes before it exits). A node
//! that cannot be reached is reported, never fatal: the record is safe on this computer and
//! goes out with the next command, `dehr sync`, or while `dehr agent` runs.

use dehr_agent::Agent;

/// Levels `who`'s replica with its nodes and tells the person about nodes out of reach.
/// `what` says why, for the message ("reading", "sending").
pub(crate) async fn level(agent: &Agent, who: &str, what: &str) {
    let report = match agent.sync_replica(who).await {
        Ok(report) => report,
        Err(e) => {
            eprintln!("warning: {what}: the local replica could not sync: {e}");
            return;
        }
    };
    let Some(replica) = agent.replica() else {
        return;
    };
    let Ok(identity) = agent.identity(who) else {
        return;
    };
    let ready = replica.is_ready(&identity.did).await;
    for node in &report {
        if let Err(why) = node.pushed.as_ref().and(node.pulled.as_ref()) {
            eprintln!(
                "warning: {what}: {} is out of reach ({why}); {}",
                node.node,
                if ready {
                    "the record is kept on this computer and sent when the node is back (dehr sync)"
                } else {
                    "asking the other nodes"
                }
            );
        }
    }
}
