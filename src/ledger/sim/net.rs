//! The simulation's network: routes the commands of each node's detached control-plane handle
//! ([`crate::p2p::P2pHandle::detached`]) to the other nodes, as the swarm would, through the
//! faults the scenario sets. Two nodes reach each other while both run, sit on the same side of
//! the partition and the link between them is not cut (a cut link is not transitive: a node may
//! reach two nodes that do not reach each other, as members behind different NATs); a request
//! between nodes that do not fails at once (libp2p fails a request to a peer it holds no
//! connection to), a lost message fails its request at libp2p's raft timeout, and every message
//! that goes through waits a random delay. The peer table each node reads is the set of nodes
//! it reaches, and it hears of every node it ever reached. It counts the bytes each node sends
//! in requests and answers, and the gossip bytes delivered to each ([`Net::take_traffic`]). A
//! scripted scenario can also withhold raft's log on one link ([`Net::withhold_log`]).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use libp2p::PeerId;
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::ledger::raft::network::{LedgerRpc, RaftRpc};
use crate::p2p::heard::HeardOf;
use crate::p2p::{
    Command, ConnectionKind, Detached, GossipMessage, InboundRpc, P2pError, PeerView, Service,
    Shared,
};

/// How long a request whose message was lost waits before it fails (libp2p's raft timeout).
pub const LOST_TIMEOUT: Duration = Duration::from_secs(30);

/// A node's running incarnation, as the network reaches it.
struct Port {
    inboxes: [mpsc::Sender<InboundRpc>; 2],
    gossip: broadcast::Sender<GossipMessage>,
    shared: Arc<Shared>,
}

struct Links {
    rng: StdRng,
    peers: Vec<PeerId>,
    ports: Vec<Option<Port>>,
    /// The side of the partition each node is on.
    side: Vec<u8>,
    /// The links cut apart from the partition, each as (lower index, higher).
    cut: Vec<(usize, usize)>,
    /// The directed links, as (from, to), that carry no raft log: appends holding entries and
    /// snapshot chunks are dropped as if unreachable, while votes and empty appends go through.
    withheld: Vec<(usize, usize)>,
    heard: Vec<HeardOf>,
    /// The chance that one message is lost.
    loss: f64,
    /// The messages sent so far, delivered or not.
    messages: u64,
    max_delay: Duration,
    /// Bytes of requests and answers each node sent, and of gossip delivered to each, since
    /// they were last taken.
    traffic: Traffic,
}

/// What the network carried for each node, indexed as the nodes are.
#[derive(Debug, Clone, Default)]
pub struct Traffic {
    /// Bytes of the requests and answers it sent.
    pub sent: Vec<u64>,
    /// Bytes of the gossip messages delivered to it.
    pub gossip: Vec<u64>,
}

impl Links {
    fn reach(&self, a: usize, b: usize) -> bool {
        a != b
            && self.ports[a].is_some()
            && self.ports[b].is_some()
            && self.side[a] == self.side[b]
            && !self.cut.contains(&(a.min(b), a.max(b)))
    }

    /// What becomes of one message from `a` to `b`: `None` when it does not arrive, else its
    /// delay.
    fn fate(&mut self, a: usize, b: usize) -> Fate {
        self.messages += 1;
        if !self.reach(a, b) {
            return Fate::Unreachable;
        }
        if self.rng.gen_bool(self.loss) {
            return Fate::Lost;
        }
        let max = self.max_delay.as_micros() as u64;
        Fate::After(Duration::from_micros(self.rng.gen_range(0..=max)))
    }

    /// Publishes to each running node the peers it reaches, and what it has heard of.
    fn publish_peers(&mut self) {
        for a in 0..self.peers.len() {
            let reached: Vec<usize> = (0..self.peers.len())
                .filter(|&b| self.reach(a, b))
                .collect();
            for &b in &reached {
                self.heard[a].note(self.peers[b]);
            }
            let Some(port) = &self.ports[a] else {
                continue;
            };
            let views = reached
                .iter()
                .map(|&b| {
                    Arc::new(PeerView {
                        peer_id: self.peers[b].to_string(),
                        hostname: super::hostname(b),
                        addresses: Vec::new(),
                        connection: ConnectionKind::Direct,
                        rtt_ms: None,
                        admitted_since: 0,
                        relay: false,
                    })
                })
                .collect();
            port.shared.peers.store(Arc::new(views));
            port.shared
                .heard
                .store(Arc::new(self.heard[a].summary().clone()));
        }
    }
}

enum Fate {
    Unreachable,
    Lost,
    After(Duration),
}

/// Whether a ledger request carries raft's log: an append holding entries, or a snapshot chunk.
fn carries_log(payload: &[u8]) -> bool {
    match serde_json::from_slice::<LedgerRpc>(payload) {
        Ok(LedgerRpc::Raft { rpc, .. }) => match rpc {
            RaftRpc::Append(append) => !append.entries.is_empty(),
            RaftRpc::Snapshot(_) => true,
            RaftRpc::Vote(_) => false,
        },
        _ => false,
    }
}

/// The network between the simulated nodes.
#[derive(Clone)]
pub struct Net {
    links: Arc<Mutex<Links>>,
}

impl Net {
    pub fn new(peers: Vec<PeerId>, seed: u64, max_delay: Duration) -> Net {
        let n = peers.len();
        Net {
            links: Arc::new(Mutex::new(Links {
                rng: StdRng::seed_from_u64(seed),
                peers,
                ports: (0..n).map(|_| None).collect(),
                side: vec![0; n],
                cut: Vec::new(),
                withheld: Vec::new(),
                heard: (0..n).map(|_| HeardOf::default()).collect(),
                loss: 0.0,
                messages: 0,
                max_delay,
                traffic: Traffic {
                    sent: vec![0; n],
                    gossip: vec![0; n],
                },
            })),
        }
    }

    fn links(&self) -> std::sync::MutexGuard<'_, Links> {
        self.links.lock().expect("the simulated network's lock")
    }

    /// Connects node `index`'s new incarnation, and routes its commands until it stops.
    pub fn attach(&self, index: usize, far: Detached) {
        let Detached {
            commands,
            inboxes,
            gossip,
            shared,
        } = far;
        {
            let mut links = self.links();
            links.ports[index] = Some(Port {
                inboxes,
                gossip,
                shared,
            });
            links.publish_peers();
        }
        tokio::spawn(self.clone().route(index, commands));
    }

    /// Cuts node `index` off: it has stopped.
    pub fn detach(&self, index: usize) {
        let mut links = self.links();
        links.ports[index] = None;
        links.publish_peers();
    }

    /// Splits the nodes into the sides given (one per node); all zeros heals, cut links and
    /// withheld logs included.
    pub fn partition(&self, side: Vec<u8>) {
        let mut links = self.links();
        if side.iter().all(|&s| s == 0) {
            links.cut.clear();
            links.withheld.clear();
        }
        links.side = side;
        links.publish_peers();
    }

    /// Withholds raft's log from `to` on the link from `from` ([`Links::withheld`]), until the
    /// partition heals.
    pub fn withhold_log(&self, from: usize, to: usize) {
        self.links().withheld.push((from, to));
    }

    /// Cuts the link between nodes `a` and `b` alone, until the partition heals.
    pub fn cut(&self, a: usize, b: usize) {
        let mut links = self.links();
        let link = (a.min(b), a.max(b));
        if !links.cut.contains(&link) {
            links.cut.push(link);
        }
        links.publish_peers();
    }

    pub fn set_loss(&self, loss: f64) {
        self.links().loss = loss;
    }

    /// The messages sent so far, delivered or not.
    pub fn messages(&self) -> u64 {
        self.links().messages
    }

    /// What the network carried for each node since the last call, and starts counting anew.
    pub fn take_traffic(&self) -> Traffic {
        let mut links = self.links();
        let n = links.peers.len();
        std::mem::replace(
            &mut links.traffic,
            Traffic {
                sent: vec![0; n],
                gossip: vec![0; n],
            },
        )
    }

    async fn route(self, from: usize, mut commands: mpsc::Receiver<Command>) {
        while let Some(command) = commands.recv().await {
            match command {
                Command::Request {
                    service,
                    peer,
                    payload,
                    reply,
                } => {
                    tokio::spawn(self.clone().request(from, service, peer, payload, reply));
                }
                Command::Publish { data, reply } => {
                    let _ = reply.send(Ok(()));
                    self.publish(from, data);
                }
                // Every link of the simulated mesh is up or cut as the test says: nothing to dial
                // and nothing to keep.
                Command::Deny { .. }
                | Command::Connect { .. }
                | Command::Members { .. }
                | Command::Used { .. } => {}
            }
        }
    }

    fn publish(&self, from: usize, data: Vec<u8>) {
        let mut links = self.links();
        let author = links.peers[from];
        for to in 0..links.peers.len() {
            if let Fate::After(delay) = links.fate(from, to) {
                let net = self.clone();
                let data = data.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let mut links = net.links();
                    if !links.reach(from, to) {
                        return;
                    }
                    links.traffic.gossip[to] += data.len() as u64;
                    if let Some(port) = &links.ports[to] {
                        let _ = port.gossip.send(GossipMessage {
                            author,
                            data: Some(data),
                        });
                    }
                });
            }
        }
    }

    async fn request(
        self,
        from: usize,
        service: Service,
        peer: PeerId,
        payload: Vec<u8>,
        reply: oneshot::Sender<Result<Vec<u8>, P2pError>>,
    ) {
        let answer = self.exchange(from, service, peer, payload).await;
        let _ = reply.send(answer.ok_or(P2pError::Request {
            peer,
            reason: "unreachable in the simulation".to_string(),
        }));
    }

    /// One request and its answer, each through the network's faults.
    async fn exchange(
        &self,
        from: usize,
        service: Service,
        peer: PeerId,
        payload: Vec<u8>,
    ) -> Option<Vec<u8>> {
        let deadline = tokio::time::Instant::now() + LOST_TIMEOUT;
        let (to, fate) = {
            let mut links = self.links();
            let to = links.peers.iter().position(|p| *p == peer)?;
            if links.withheld.contains(&(from, to)) && carries_log(&payload) {
                return None;
            }
            (to, links.fate(from, to))
        };
        let there = self.delay(fate, deadline).await?;
        tokio::time::sleep(there).await;
        let (answer_tx, answer_rx) = oneshot::channel();
        let inbox = {
            let links = self.links();
            if !links.reach(from, to) {
                return None;
            }
            let port = links.ports[to].as_ref()?;
            port.inboxes[service.slot()].clone()
        };
        let from_peer = {
            let mut links = self.links();
            links.traffic.sent[from] += payload.len() as u64;
            links.peers[from]
        };
        inbox
            .send(InboundRpc {
                peer: from_peer,
                behind: false,
                payload,
                reply: answer_tx,
            })
            .await
            .ok()?;
        let answer = tokio::time::timeout_at(deadline, answer_rx)
            .await
            .ok()?
            .ok()?;
        let fate = self.links().fate(to, from);
        self.links().traffic.sent[to] += answer.len() as u64;
        let back = self.delay(fate, deadline).await?;
        tokio::time::sleep(back).await;
        Some(answer)
    }

    /// The delay of a message, or `None` once it failed: at once when unreachable, at the
    /// deadline when lost.
    async fn delay(&self, fate: Fate, deadline: tokio::time::Instant) -> Option<Duration> {
        match fate {
            Fate::After(delay) => Some(delay),
            Fate::Unreachable => None,
            Fate::Lost => {
                tokio::time::sleep_until(deadline).await;
                None
            }
        }
    }
}
