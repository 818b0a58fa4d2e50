//! Per-station rate limit and daily quota, and the standard gRPC health and
//! reflection services.
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
