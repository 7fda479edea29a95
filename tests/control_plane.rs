//! In-process control-plane tests: several weft swarms in one process on loopback, connected by
//! explicit bootstrap addresses (no mDNS, no public anything). Runs anywhere, no root.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::StreamExt as _;
use libp2p::swarm::SwarmEvent;
use libp2p::{kad, noise, request_response, tcp, yamux};
use weft::p2p::protocol::Protocols;
use weft::p2p::{AuthCodec, ControlCodec};
use weft::proto::p2p::v1::{
    AuthChallenge, ControlRequest, ControlResponse, PeerExchangeRequest, control_request,
    control_response,
};

mod support;

use support::mesh::{
    DEADLINE, Member, address, admitted, network, start, start_as, start_with, wait_for,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_admit_each_other_and_a_stranger_is_admitted_by_nobody() {
    let token = network();
    let first = start(&token, "first", vec![]).await;
    let entry = address(&first).await;
    let second = start(&token, "second", vec![entry.clone()]).await;
    let third = start(&token, "third", vec![entry.clone()]).await;
    let stranger = start(&network(), "stranger", vec![entry]).await;

    let members = [&first, &second, &third];
    let ids: Vec<String> = members
        .iter()
        .map(|m| m.handle.peer_id().to_string())
        .collect();
    for (i, member) in members.iter().enumerate() {
        let others: BTreeSet<String> = ids
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, id)| id.clone())
            .collect();
        wait_for(
            &format!("member {i} to admit exactly the two others"),
            || (admitted(member) == others).then_some(()),
        )
        .await;
    }
    let hostnames: BTreeSet<String> = first
        .handle
        .peers()
        .iter()
        .map(|p| p.hostname.clone())
        .collect();
    assert_eq!(
        hostnames,
        BTreeSet::from(["second".to_string(), "third".to_string()])
    );

    // Protocol names are the same for every network, so the stranger answers the challenge,
    // with a proof made from another token; whichever side checks first refuses the other.
    let bad_proof = "weft_admission_rejections_total{reason=\"bad_proof\"}";
    wait_for(
        "the entry member and the stranger to refuse each other",
        || (first.counter(bad_proof) + stranger.counter(bad_proof) > 0).then_some(()),
    )
    .await;
    assert!(
        admitted(&stranger).is_empty(),
        "the stranger admitted someone"
    );
    let stranger_id = stranger.handle.peer_id().to_string();
    for member in members {
        assert!(!admitted(member).contains(&stranger_id));
        assert_eq!(admitted(member).len(), 2);
    }
}

/// A bare libp2p node on TCP with `behaviour`: no weft in it, whatever protocols it speaks.
fn bare_swarm<B: libp2p::swarm::NetworkBehaviour>(
    behaviour: impl FnOnce(&libp2p::identity::Keypair) -> B,
) -> libp2p::Swarm<B> {
    libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(behaviour)
        .unwrap()
        .build()
}

/// A node that speaks weft's protocols without holding the token.
#[derive(libp2p::swarm::NetworkBehaviour)]
#[behaviour(prelude = "libp2p::swarm::derive_prelude")]
struct Stranger {
    auth: request_response::Behaviour<AuthCodec>,
    control: request_response::Behaviour<ControlCodec>,
    identify: libp2p::identify::Behaviour,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_learns_nothing_and_using_a_member_protocol_other_than_auth_is_refused() {
    let token = network();
    let member = start(&token, "member", vec![]).await;
    let target = address(&member).await;

    // A bare libp2p node that knows weft's protocol names but not the token. It takes the
    // member's challenge and never answers it; it challenges the member, asks for the member
    // list and reads what identify tells it meanwhile.
    let protocols = Protocols::new();
    let mut stranger = bare_swarm(|key| Stranger {
        identify: libp2p::identify::Behaviour::new(libp2p::identify::Config::new(
            "/stranger/1".into(),
            key.public(),
        )),
        auth: request_response::Behaviour::new(
            [(
                protocols.auth.clone(),
                request_response::ProtocolSupport::Full,
            )],
            request_response::Config::default(),
        ),
        control: request_response::Behaviour::new(
            [(
                protocols.control.clone(),
                request_response::ProtocolSupport::Full,
            )],
            request_response::Config::default(),
        ),
    });
    let mut unanswered_challenges = Vec::new();
    stranger.dial(target).unwrap();
    let mut identified = None;
    let mut proof = None;
    let mut refusal = None;
    tokio::time::timeout(DEADLINE, async {
        while identified.is_none() || proof.is_none() || refusal.is_none() {
            match stranger.select_next_some().await {
                SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                    let behaviour = stranger.behaviour_mut();
                    behaviour.control.send_request(
                        &peer_id,
                        ControlRequest {
                            kind: Some(control_request::Kind::Peers(PeerExchangeRequest {})),
                        },
                    );
                    behaviour
                        .auth
                        .send_request(&peer_id, AuthChallenge { nonce: vec![9; 32] });
                }
                SwarmEvent::Behaviour(StrangerEvent::Auth(request_response::Event::Message {
                    message: request_response::Message::Request { channel, .. },
                    ..
                })) => unanswered_challenges.push(channel),
                SwarmEvent::Behaviour(StrangerEvent::Auth(request_response::Event::Message {
                    message: request_response::Message::Response { response, .. },
                    ..
                })) => proof = Some(response),
                SwarmEvent::Behaviour(StrangerEvent::Identify(
                    libp2p::identify::Event::Received { info, .. },
                )) => identified = Some(info),
                SwarmEvent::Behaviour(StrangerEvent::Control(
                    request_response::Event::Message {
                        message: request_response::Message::Response { response, .. },
                        ..
                    },
                )) => refusal = Some(Ok::<ControlResponse, String>(response)),
                SwarmEvent::Behaviour(StrangerEvent::Control(
                    request_response::Event::OutboundFailure { error, .. },
                )) => refusal = Some(Err(error.to_string())),
                _ => {}
            }
        }
    })
    .await
    .expect("the member answers the challenge, the request and identify");
    match refusal.unwrap() {
        Ok(ControlResponse {
            kind: Some(control_response::Kind::Refused(refused)),
        }) => assert_eq!(refused.reason, "not admitted"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    // Nothing the stranger saw names the network or the machine.
    let network_id = token.keys().network_id().to_string();
    let info = identified.unwrap();
    assert_eq!(info.protocol_version, "/weft/1");
    assert_eq!(info.agent_version, "weft", "no version for strangers");
    for protocol in &info.protocols {
        assert!(!protocol.as_ref().contains(&network_id), "{protocol}");
    }
    let proof = proof.unwrap();
    assert!(!proof.sealed_hostname.windows(6).any(|w| w == b"member"));
    assert!(member.handle.peers().is_empty());
}

/// A node that knows weft's protocol names, not the token, and asks the private Kademlia.
#[derive(libp2p::swarm::NetworkBehaviour)]
#[behaviour(prelude = "libp2p::swarm::derive_prelude")]
struct Prober {
    auth: request_response::Behaviour<AuthCodec>,
    kad: kad::Behaviour<kad::store::MemoryStore>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_gets_no_member_list_from_the_private_kademlia() {
    let token = network();
    let member = start(&token, "member", vec![]).await;
    let target = address(&member).await;
    let other = start(&token, "other", vec![target.clone()]).await;
    wait_for("the members to admit each other", || {
        (admitted(&member).len() == 1 && admitted(&other).len() == 1).then_some(())
    })
    .await;
    let (member_id, other_id) = (member.handle.peer_id(), other.handle.peer_id());

    // The prober holds the member's challenge unanswered, so its admission is still pending,
    // and asks the member for the peers closest to a random key meanwhile.
    let protocols = Protocols::new();
    let mut prober = bare_swarm(|key| {
        let local = key.public().to_peer_id();
        let mut config = kad::Config::new(protocols.kad.clone());
        config.set_query_timeout(Duration::from_secs(20));
        Prober {
            auth: request_response::Behaviour::new(
                [(
                    protocols.auth.clone(),
                    request_response::ProtocolSupport::Full,
                )],
                request_response::Config::default(),
            ),
            kad: kad::Behaviour::with_config(local, kad::store::MemoryStore::new(local), config),
        }
    });
    prober.behaviour_mut().kad.add_address(&member_id, target);
    prober
        .behaviour_mut()
        .kad
        .get_closest_peers(libp2p::PeerId::random());
    let mut unanswered_challenges = Vec::new();
    let mut dialled = BTreeSet::new();
    let outcome = tokio::time::timeout(DEADLINE, async {
        loop {
            match prober.select_next_some().await {
                SwarmEvent::Behaviour(ProberEvent::Auth(request_response::Event::Message {
                    message: request_response::Message::Request { channel, .. },
                    ..
                })) => unanswered_challenges.push(channel),
                SwarmEvent::Dialing {
                    peer_id: Some(peer),
                    ..
                } => {
                    dialled.insert(peer);
                }
                SwarmEvent::Behaviour(ProberEvent::Kad(kad::Event::OutboundQueryProgressed {
                    result: kad::QueryResult::GetClosestPeers(result),
                    step,
                    ..
                })) if step.last => break result,
                _ => {}
            }
        }
    })
    .await
    .expect("the query ends");
    let answered = match outcome {
        Ok(ok) => ok.peers,
        Err(kad::GetClosestPeersError::Timeout { peers, .. }) => peers,
    };
    assert!(
        answered.is_empty(),
        "the member answered a stranger's FIND_NODE: {answered:?}"
    );
    assert!(
        !dialled.contains(&other_id),
        "the stranger learned of the other member"
    );
    assert!(
        member
            .handle
            .peers()
            .iter()
            .all(|p| p.peer_id != prober.local_peer_id().to_string())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_gossip_reaches_every_member() {
    let token = network();
    let first = start(&token, "first", vec![]).await;
    let entry = address(&first).await;
    let second = start(&token, "second", vec![entry.clone()]).await;
    let third = start(&token, "third", vec![entry]).await;
    for member in [&first, &second, &third] {
        wait_for("a full mesh", || {
            (member.handle.peers().len() == 2).then_some(())
        })
        .await;
    }
    let mut inboxes = [second.handle.gossip(), third.handle.gossip()];
    // gossipsub needs a heartbeat or two to build its mesh after peers appear.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while first
        .handle
        .publish(b"hello members".to_vec())
        .await
        .is_err()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "gossip never had peers"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for inbox in &mut inboxes {
        let message = tokio::time::timeout(DEADLINE, inbox.recv())
            .await
            .expect("gossip arrives")
            .unwrap();
        assert_eq!(message.data.as_deref(), Some(&b"hello members"[..]));
        assert_eq!(message.author, first.handle.peer_id());
    }
}

/// Publishes `data` from `from` until gossipsub has a mesh to send it on.
async fn publish(from: &Member, data: &[u8]) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while from.handle.publish(data.to_vec()).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "gossip never had peers"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gossip_sealed_under_a_token_a_member_does_not_hold_yet_reaches_it_unopened() {
    let token = network();
    let first = start(&token, "first", vec![]).await;
    let second = start(&token, "second", vec![address(&first).await]).await;
    for member in [&first, &second] {
        wait_for("the two to admit each other", || {
            (member.handle.peers().len() == 1).then_some(())
        })
        .await;
    }
    let (mut at_first, mut at_second) = (first.handle.gossip(), second.handle.gossip());
    // `first` moves to a new token; `second` has not heard of the rotation.
    first.keyring.rotate(network(), u64::MAX);
    publish(&first, b"under the new token").await;
    let unopened = tokio::time::timeout(DEADLINE, at_second.recv())
        .await
        .expect("the message arrives")
        .unwrap();
    assert_eq!(unopened.author, first.handle.peer_id());
    assert_eq!(unopened.data, None, "opened without the new token");
    // The other way, `first` still opens the token before.
    publish(&second, b"under the old token").await;
    let opened = tokio::time::timeout(DEADLINE, at_first.recv())
        .await
        .expect("the message arrives")
        .unwrap();
    assert_eq!(opened.data.as_deref(), Some(&b"under the old token"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_that_share_only_a_bootstrap_node_meet_through_the_dht_rendezvous() {
    let token = network();
    let first = start_with(&token, "first", vec![], None).await;
    let entry = address(&first).await;
    let second = start_with(&token, "second", vec![entry.clone()], None).await;
    wait_for("second to be admitted by first", || {
        (first.handle.peers().len() == 1).then_some(())
    })
    .await;
    let third = start_with(&token, "third", vec![entry], None).await;
    let second_id = second.handle.peer_id().to_string();
    wait_for("third to find second through the rendezvous record", || {
        admitted(&third).contains(&second_id).then_some(())
    })
    .await;
}

/// When `member` admitted `peer` last, as its peer table says, if it holds it admitted.
fn admitted_since(member: &Member, peer: &str) -> Option<u64> {
    member
        .handle
        .peers()
        .iter()
        .find(|view| view.peer_id == peer)
        .map(|view| view.admitted_since)
}

/// A node restarted while a member keeps its old connection open (a QUIC connection of a
/// killed process stays until it times out) challenges the member afresh: it is admitted anew,
/// so what the leader knew of it (which operator key it runs with) is asked again, not taken
/// from the process before. Here the second process runs beside the first under the same
/// identity, as a restart the member has not seen looks. Fails without it: the admission time
/// stays the first process's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_challenges_a_member_again_is_admitted_anew() {
    let token = network();
    let member = start(&token, "member", vec![]).await;
    let entry = address(&member).await;
    let keypair = libp2p::identity::Keypair::generate_ed25519();
    let first = start_as(&token, "restarting", vec![entry.clone()], &keypair).await;
    let id = first.handle.peer_id().to_string();
    // Each admits the other first, so that the node's own first challenge is answered.
    let member_id = member.handle.peer_id().to_string();
    let since = wait_for("the member and the node to admit each other", || {
        admitted_since(&first, &member_id)?;
        admitted_since(&member, &id)
    })
    .await;
    // Admission times are in seconds: the second process comes in a later one.
    wait_for("a second to pass", || {
        (weft::clock::unix_now() > since).then_some(())
    })
    .await;
    let second = start_as(&token, "restarting", vec![entry], &keypair).await;
    wait_for("the member to count the node admitted anew", || {
        admitted_since(&member, &id)
            .is_some_and(|again| again > since)
            .then_some(())
    })
    .await;
    drop((first, second));
}
