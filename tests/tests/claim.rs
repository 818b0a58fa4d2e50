//! Owner claims with brute-force protection (EN 303 645 5.1-5): wrong codes
//! make the device wait longer each time and lock it out; while it waits no
//! code is looked at (a correct one included); after the lockout a correct
//! code works; and one caller's wrong codes across many devices are capped.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use hallmark_proto::v1 as pb;
use hallmark_proto::v1::ownership_client::OwnershipClient;
use hallmark_tests::fixture::{Fixture, request};
use tonic::Code;

fn retry_ms(s: &tonic::Status) -> u64 {
    s.metadata()
        .get("retry-after-ms")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_codes_slow_down_then_lock_out_and_the_right_code_works_after() {
    let f = Fixture::start_with_config(|c| {
        c.replace("claim_base_delay_ms = 1000", "claim_base_delay_ms = 200")
            .replace("claim_max_failures = 10", "claim_max_failures = 3")
            .replace("claim_lockout_seconds = 86400", "claim_lockout_seconds = 2")
            .replace(
                "claim_caller_failures_per_hour = 100",
                "claim_caller_failures_per_hour = 6",
            )
    })
    .await;
    f.add_model("m1", pb::SetupCodePolicy::Numeric8, false)
        .await;
    let st = f.add_station("st1", &["m1"]).await;
    let mut station = f.provisioning_client(&st).await;
    let mut devices = vec![];
    for i in 0..4 {
        let r = station
            .provision(request("m1", &format!("C-{i}")).1)
            .await
            .unwrap()
            .into_inner();
        devices.push((r.device_id, r.setup_code));
    }
    let (id, code) = devices[0].clone();
    let wrong = if code == "13572468" {
        "24681357"
    } else {
        "13572468"
    };
    let mut cloud = OwnershipClient::new(f.channel(&f.verifier).await);
    let claim = |id: &str, code: &str| pb::ClaimRequest {
        device_id: id.into(),
        setup_code: code.into(),
        owner: "user-42".into(),
    };

    // 1st wrong code: refused, and the device now waits 200 ms.
    let e = cloud.claim(claim(&id, wrong)).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    // While it waits, even the right code is not looked at.
    let e = cloud.claim(claim(&id, &code)).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    let mut waits = vec![];
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(
            retry_ms(&e).max(waits.last().copied().unwrap_or(0)) + 50,
        ))
        .await;
        let e = loop {
            match cloud.claim(claim(&id, wrong)).await.unwrap_err() {
                e if e.code() == Code::ResourceExhausted => {
                    tokio::time::sleep(Duration::from_millis(retry_ms(&e) + 20)).await
                }
                e => break e,
            }
        };
        assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
        let e2 = cloud.claim(claim(&id, &code)).await.unwrap_err();
        assert_eq!(e2.code(), Code::ResourceExhausted);
        waits.push(retry_ms(&e2));
    }
    // The waits grew, and the third failure locked the device (2 s here).
    assert!(waits[1] > 1000, "{waits:?}");
    let d = f.state().store.device(&id).unwrap().unwrap();
    assert_eq!(d.claim_failures, 3);
    assert!(d.owner.is_none());
    // After the lockout the right code works and resets the count.
    tokio::time::sleep(Duration::from_millis(waits[1] + 100)).await;
    cloud.claim(claim(&id, &code)).await.unwrap();
    let d = f.state().store.device(&id).unwrap().unwrap();
    assert_eq!((d.owner.as_deref(), d.claim_failures), (Some("user-42"), 0));
    // Another owner cannot take it over with the same code.
    let e = cloud
        .claim(pb::ClaimRequest {
            device_id: id.clone(),
            setup_code: code.clone(),
            owner: "someone-else".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists);

    // The caller has spent 3 of its 6 wrong codes this hour: 3 more on other
    // devices, then it is refused everywhere, even with a right code.
    for (other, _) in &devices[1..4] {
        let e = cloud.claim(claim(other, wrong)).await.unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    }
    let (id3, code3) = &devices[3];
    tokio::time::sleep(Duration::from_millis(300)).await;
    let e = cloud.claim(claim(id3, code3)).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("this caller"), "{e:?}");
    // Another caller (an admin) is unaffected.
    let mut admin = OwnershipClient::new(f.channel(&f.admin).await);
    admin.claim(claim(id3, code3)).await.unwrap();

    // Bad input.
    for (dev, c) in [
        ("not-a-uuid", "12345678"),
        (id3.as_str(), ""),
        (id3.as_str(), "bad code!"),
    ] {
        let e = admin.claim(claim(dev, c)).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{dev} {c}: {e:?}");
    }
    // Failed guesses are audit alerts; no setup code is in the audit log.
    let audit = f.state().store.audit_records().unwrap();
    assert!(
        audit
            .iter()
            .filter(|r| r.event.action == "alert.claim_failed")
            .count()
            >= 6
    );
    let text = format!("{audit:?}");
    for (_, c) in &devices {
        assert!(!text.contains(c.as_str()));
    }
}
