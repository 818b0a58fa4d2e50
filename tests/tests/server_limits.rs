//! Input limits: per-station rate and daily quota, per-peer request rate,
//! message size, concurrent streams per connection and the TLS handshake
//! timeout; a flooding or slow client is refused and others carry on. Also the
//! standard gRPC health and reflection services.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use hallmark_proto::v1 as pb;
use hallmark_tests::fixture::{Fixture, request};
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_station_over_its_rate_gets_resource_exhausted_with_a_retry_hint() {
    let f = Fixture::start_with_config(|c| {
        c.replace(
            "station_requests_per_second = 500",
            "station_requests_per_second = 1",
        )
        .replace("station_burst = 1000", "station_burst = 3")
    })
    .await;
    f.add_model("m1", pb::SetupCodePolicy::Alnum12, false).await;
    let st = f.add_station("fast-st", &["m1"]).await;
    let other = f.add_station("calm-st", &["m1"]).await;
    let mut c = f.provisioning_client(&st).await;
    let mut refused = None;
    for i in 0..10 {
        match c.provision(request("m1", &format!("R-{i}")).1).await {
            Ok(_) => {}
            Err(e) => {
                refused = Some((i, e));
                break;
            }
        }
    }
    let (i, e) = refused.expect("the burst of 3 was never exceeded");
    assert!(i >= 3, "refused too early, at request {i}");
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    let hint: u64 = e
        .metadata()
        .get("retry-after-ms")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(hint > 0 && hint <= 1000, "{hint}");
    // Another station is unaffected.
    f.provisioning_client(&other)
        .await
        .provision(request("m1", "CALM-1").1)
        .await
        .unwrap();
    // After the hinted wait the station may go on.
    tokio::time::sleep(std::time::Duration::from_millis(hint + 50)).await;
    c.provision(request("m1", "R-after").1).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daily_quota_holds_and_nothing_is_written_past_it() {
    let f = Fixture::start_with_config(|c| {
        c.replace("station_daily_quota = 200000", "station_daily_quota = 2")
    })
    .await;
    f.add_model("m1", pb::SetupCodePolicy::Alnum12, false).await;
    let st = f.add_station("quota-st", &["m1"]).await;
    let mut c = f.provisioning_client(&st).await;
    c.provision(request("m1", "Q-1").1).await.unwrap();
    c.provision(request("m1", "Q-2").1).await.unwrap();
    let before = f.counts();
    let e = c.provision(request("m1", "Q-3").1).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("quota"), "{}", e.message());
    assert_eq!(f.counts(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_reflection_answer_standard_clients() {
    let f = Fixture::start().await;
    let ch = f.channel(&f.admin).await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(ch.clone());
    for service in ["", "hallmark.v1.Provisioning", "hallmark.v1.Admin"] {
        let r = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            r.status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
            "{service:?}"
        );
    }
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let mut refl = ServerReflectionClient::new(ch);
    let req = tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = refl
        .server_reflection_info(tokio_stream::iter(vec![req]))
        .await
        .unwrap()
        .into_inner();
    let resp = stream.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = resp.message_response else {
        panic!("unexpected reflection answer {resp:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for want in [
        "hallmark.v1.Provisioning",
        "hallmark.v1.Admin",
        "grpc.health.v1.Health",
    ] {
        assert!(names.iter().any(|n| n == want), "{names:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_peer_gets_resource_exhausted_and_others_carry_on() {
    let f = Fixture::start_with_config(|c| {
        c.replace(
            "peer_requests_per_second = 100",
            "peer_requests_per_second = 1",
        )
        .replace("peer_burst = 200", "peer_burst = 5")
    })
    .await;
    f.add_model("m1", pb::SetupCodePolicy::Alnum12, false).await;
    let st = f.add_station("flood-st", &["m1"]).await;
    let device_id = f
        .provisioning_client(&st)
        .await
        .provision(request("m1", "FLOOD-1").1)
        .await
        .unwrap()
        .into_inner()
        .device_id;
    use hallmark_proto::v1::verification_client::VerificationClient;
    let mut cloud = VerificationClient::new(f.channel(&f.verifier).await);
    let mut refusal = None;
    for i in 0..50 {
        let r = cloud.trust_bundle(pb::TrustBundleRequest {}).await;
        if let Err(e) = r {
            refusal = Some((i, e));
            break;
        }
    }
    let (i, e) = refusal.expect("50 requests at once never hit the peer limit of 5");
    assert!(i >= 5, "refused before the burst was used: request {i}");
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("verifier:cloud"), "{}", e.message());
    assert!(e.metadata().get("retry-after-ms").is_some());
    // The admin, another peer, is unaffected while the verifier is throttled,
    // and a refused write changes nothing.
    let mut admin = f.admin_client().await;
    let before = f.counts();
    admin
        .get_device(pb::GetDeviceRequest {
            device_id: device_id.clone(),
        })
        .await
        .unwrap();
    assert_eq!(f.counts(), before);
    assert_eq!(
        cloud
            .trust_bundle(pb::TrustBundleRequest {})
            .await
            .unwrap_err()
            .code(),
        Code::ResourceExhausted
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_message_is_refused_before_it_is_decoded() {
    let f = Fixture::start().await;
    f.add_model("m1", pb::SetupCodePolicy::Alnum12, false).await;
    let st = f.add_station("big-st", &["m1"]).await;
    let mut c = f.provisioning_client(&st).await;
    let before = f.counts();
    let (_, mut req) = request("m1", "BIG-1");
    req.csr_der = vec![0x30; hallmark_provisioner::server::MAX_MESSAGE_BYTES + 1];
    let e = c.provision(req).await.unwrap_err();
    assert_eq!(e.code(), Code::OutOfRange, "{e:?}");
    assert!(e.message().contains("too large"), "{}", e.message());
    assert_eq!(f.counts(), before);
    // The same connection still serves a normal request.
    c.provision(request("m1", "BIG-2").1).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_holds_at_most_its_streams_and_other_connections_are_served() {
    let f = Fixture::start_with_config(|c| {
        c.replace("streams_per_connection = 64", "streams_per_connection = 2")
    })
    .await;
    f.add_model("m1", pb::SetupCodePolicy::Alnum12, false).await;
    let st = f.add_station("streams-st", &["m1"]).await;
    let ch = f.channel(&st).await;
    // Two open streams that send nothing use up this connection's streams.
    let mut held = vec![];
    for _ in 0..2 {
        let (tx, rx) = tokio::sync::mpsc::channel::<pb::ProvisionRequest>(1);
        let mut c = hallmark_proto::v1::provisioning_client::ProvisioningClient::new(ch.clone());
        let resp = c
            .provision_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .unwrap();
        held.push((tx, resp));
    }
    // A third call on the same connection waits for a free stream...
    let mut third = hallmark_proto::v1::provisioning_client::ProvisioningClient::new(ch.clone());
    let waiting = tokio::spawn(async move { third.provision(request("m1", "S-3").1).await });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(
        !waiting.is_finished(),
        "a third stream was served on a connection limited to two"
    );
    // ...while another connection of the same station is served at once.
    f.provisioning_client(&st)
        .await
        .provision(request("m1", "S-other").1)
        .await
        .unwrap();
    // Closing one stream lets the waiting call through.
    drop(held.pop());
    let r = tokio::time::timeout(std::time::Duration::from_secs(30), waiting)
        .await
        .expect("the waiting call never got a stream")
        .unwrap();
    r.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_client_is_disconnected_after_the_handshake_timeout() {
    use tokio::io::AsyncReadExt;
    let f = Fixture::start_with_config(|c| {
        c.replace("handshake_timeout_ms = 10000", "handshake_timeout_ms = 300")
    })
    .await;
    f.add_model("m1", pb::SetupCodePolicy::Alnum12, false).await;
    let st = f.add_station("calm-st", &["m1"]).await;
    let failures = f.handshake_failures();
    let addr = f.running.as_ref().unwrap().grpc_addr;
    // Several connections that never speak (slowloris).
    let mut silent = vec![];
    for _ in 0..8 {
        silent.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    // Others are served meanwhile.
    f.provisioning_client(&st)
        .await
        .provision(request("m1", "SLOW-1").1)
        .await
        .unwrap();
    for mut s in silent {
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(std::time::Duration::from_secs(30), s.read(&mut buf))
            .await
            .expect("the server never closed a silent connection")
            .unwrap_or(0);
        assert_eq!(n, 0, "the server sent data to a client that never spoke");
    }
    assert!(f.handshake_failures() >= failures + 8);
}
