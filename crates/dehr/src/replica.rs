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

/// Keeps the replica of every identity of the vault level with its nodes while the process
/// runs (`dehr agent`): a round shortly after each local write, and one every `every`. The
/// identities are read again each round, so one created in the portal is included at once;
/// the agent is locked only to read them, never during the network work.
pub(crate) async fn keep_level(
    agent: std::sync::Arc<tokio::sync::Mutex<Agent>>,
    every: std::time::Duration,
) {
    let Some(replica) = agent.lock().await.replica().cloned() else {
        return;
    };
    loop {
        tokio::select! {
            () = replica.changed() => {
                // Let a burst of writes (an import) finish its current batch first.
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            () = tokio::time::sleep(every) => {}
        }
        let syncers: Vec<_> = {
            let agent = agent.lock().await;
            agent
                .identities()
                .iter()
                .filter_map(|i| agent.replica_syncer(&i.did).ok().flatten())
                .collect()
        };
        for syncer in syncers {
            for node in syncer.round().await {
                match (&node.pulled, &node.pushed) {
                    (Ok(0), Ok(0)) => {}
                    (Ok(pulled), Ok(pushed)) => {
                        tracing::info!(node = %node.node, pulled, pushed, "synced the local replica")
                    }
                    (pulled, pushed) => tracing::debug!(
                        node = %node.node,
                        pulled = ?pulled.as_ref().err(),
                        pushed = ?pushed.as_ref().err(),
                        "local replica: a node is out of reach"
                    ),
                }
            }
        }
    }
}
