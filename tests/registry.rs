//! The registry is the one list of sources: everything else that names them
//! is derived from it, or checked against it here.

mod common;

use common::*;
use mailhook::providers::{Auth, Provider};

#[test]
fn every_source_is_routed_and_named_in_the_404() {
    let not_found = mailhook::routes::not_found().to_string();
    for p in Provider::ALL {
        if p.posts() {
            assert_eq!(Provider::from_route(p.name()), Some(p));
            assert!(not_found.contains(p.name()), "{not_found}");
        } else {
            // Handed over by the platform: nobody can post as it.
            assert_eq!(Provider::from_route(p.name()), None, "{} must have no webhook route", p.name());
            assert!(!not_found.contains(p.name()), "{not_found}");
            assert_eq!(Provider::email_handler(), Some(p));
        }
    }
}

#[test]
fn every_setting_is_declared_documented_and_given_to_the_tests() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let read = |f: &str| std::fs::read_to_string(root.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
    let (readme, wrangler, dev_vars) = (read("README.md"), read("wrangler.toml"), read(".dev.vars.example"));
    let harness = read("tests/integration/harness.mjs");
    for p in Provider::ALL {
        for s in p.settings() {
            assert!(readme.contains(&format!("| `{}` |", s.name)), "README's configuration table lacks {}", s.name);
            if s.secret {
                assert!(dev_vars.lines().any(|l| l.starts_with(&format!("{}=", s.name))), ".dev.vars.example lacks {}", s.name);
                assert!(harness.contains(&format!("{}:", s.name)), "the harness's SECRETS lack {}", s.name);
            } else {
                assert!(wrangler.lines().any(|l| l.starts_with(&format!("{} = ", s.name))), "wrangler.toml [vars] lacks {}", s.name);
            }
        }
        if let Auth::SignedBody { secret, .. } = p.auth() {
            assert!(p.settings().iter().any(|s| s.name == secret && s.secret), "{} signs with an undeclared {secret}", p.name());
        }
    }
}

#[test]
fn every_signed_source_makes_the_hmac_refusals_and_checks_its_replay_window() {
    let cfg = config();
    for p in Provider::ALL {
        let Auth::SignedBody { header, secret, .. } = p.auth() else { continue };
        let name = first_fixture(p);
        check_hmac_provider(p, header, secret, &name);
        // The pipeline, not the provider, refuses an event outside the window: an old fixture with a short window.
        let short = mailhook::testkit::config_with(&[("MAX_EVENT_AGE_SECONDS", "60"), ("DEDUPE_TTL_SECONDS", "360")]).unwrap();
        let body = fixture(p, &name);
        let sent = mailhook::testkit::as_sent_by(p, &body);
        let e = ingest_with(p, &short, &sent.headers, sent.client_ip, &body).unwrap_err();
        assert_eq!(e.code(), "stale_event", "{}: {e}", p.name());
        assert!(ingest_with(p, &cfg, &sent.headers, sent.client_ip, &body).is_ok());
    }
}

/// The first fixture of a provider, by name.
fn first_fixture(p: Provider) -> String {
    fixture_names(p).remove(0)
}
