//! The requirement DSL: parsing, comparisons, upstream's messages.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use nvc_driver::{Error, Facts, Requirement};
use proptest::prelude::*;

const HOST: Facts<'static> = Facts {
    cuda: Some("12.4"),
    driver: Some("550.54.14"),
    arch: Some("8.0"),
    brand: Some("Tesla"),
};

fn ok(expr: &str) -> bool {
    match Requirement::parse(expr).unwrap().check(&HOST) {
        Ok(()) => true,
        Err(Error::Unsatisfied { .. }) => false,
        Err(e) => panic!("{expr}: {e}"),
    }
}

#[test]
fn versions_compare_numerically_ignoring_trailing_zeros() {
    assert!(ok("cuda>=12.2"));
    assert!(ok("cuda>=12.4"));
    assert!(!ok("cuda>=12.5"));
    assert!(ok("cuda<12.10"));
    assert!(ok("cuda=12.4.0.0"));
    assert!(ok("cuda!=12.4.1"));
    assert!(ok("driver>=550"));
    assert!(!ok("driver<550.54.14"));
    assert!(ok("driver<=550.54.14"));
    assert!(ok("driver>550.54"));
    assert!(ok("arch=8"));
    assert!(!ok("arch>8.0"));
}

#[test]
fn or_of_groups_and_of_terms() {
    // The shape of a CUDA image's NVIDIA_REQUIRE_CUDA.
    let image =
        "cuda>=12.4 brand=tesla,driver>=470,driver<471 brand=unknown,driver>=470,driver<471";
    assert!(ok(image));
    assert!(ok("cuda>=13.0 brand=TESLA,driver>=550"));
    assert!(!ok("cuda>=13.0 brand=tesla,driver>=551"));
    assert!(ok(""));
    assert!(ok("   "));
    assert!(ok("brand!=geforce"));
}

#[test]
fn unknown_facts_pass() {
    let none = Facts::default();
    let req = Requirement::parse("cuda>=99 arch>=10 brand=quadro driver>1000").unwrap();
    req.check(&none).unwrap();
}

#[test]
fn unsatisfied_messages_match_upstream() {
    let err = Requirement::parse("cuda>=13.0 brand=geforce")
        .unwrap()
        .check(&HOST)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "unsatisfied condition: cuda>=13.0, please update your driver to a newer version, or use an earlier cuda container"
    );
    let err = Requirement::parse("  arch>=9.0,brand=tesla")
        .unwrap()
        .check(&HOST)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "unsatisfied condition: arch>=9.0,brand=tesla"
    );
}

#[test]
fn malformed_expressions_are_invalid() {
    for bad in [
        "cuda==12.0",
        "cuda=>12.0",
        "cuda>=",
        "cuda",
        "gpu>=1",
        "cuda>=12.x",
        "cuda>=12..1",
        "brand>tesla",
        "driver>=-1",
        ">=12",
    ] {
        let err = Requirement::parse(bad).unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("invalid expression: {bad:?}")),
            "{err}"
        );
    }
    // A host version that is not numeric cannot be compared.
    let odd = Facts {
        driver: Some("550.54.14-rc1"),
        ..HOST
    };
    let err = Requirement::parse("driver>=550")
        .unwrap()
        .check(&odd)
        .unwrap_err();
    assert!(matches!(err, Error::InvalidRequirement { .. }));
}

fn cmp_reference(a: &[u64], b: &[u64]) -> std::cmp::Ordering {
    let n = a.len().max(b.len());
    let at = |v: &[u64], i: usize| v.get(i).copied().unwrap_or(0);
    (0..n)
        .map(|i| at(a, i).cmp(&at(b, i)))
        .find(|o| o.is_ne())
        .unwrap_or(std::cmp::Ordering::Equal)
}

proptest! {
    #[test]
    fn version_order_matches_component_wise_reference(
        a in prop::collection::vec(0u64..30, 1..4),
        b in prop::collection::vec(0u64..30, 1..4),
    ) {
        let text = |v: &[u64]| v.iter().map(u64::to_string).collect::<Vec<_>>().join(".");
        let (ta, tb) = (text(&a), text(&b));
        let facts = Facts { driver: Some(&ta), ..Facts::default() };
        let holds = |op: &str| Requirement::parse(&format!("driver{op}{tb}")).unwrap().check(&facts).is_ok();
        let ord = cmp_reference(&a, &b);
        prop_assert_eq!(holds("<"), ord.is_lt());
        prop_assert_eq!(holds("<="), ord.is_le());
        prop_assert_eq!(holds("="), ord.is_eq());
        prop_assert_eq!(holds("!="), ord.is_ne());
        prop_assert_eq!(holds(">"), ord.is_gt());
        prop_assert_eq!(holds(">="), ord.is_ge());
    }

    #[test]
    fn any_text_parses_or_is_invalid(expr in "[a-z<>=!0-9., ]{0,30}") {
        match Requirement::parse(&expr) {
            Ok(req) => { let _ = req.check(&HOST); }
            Err(e) => {
                let invalid = matches!(e, Error::InvalidRequirement { .. });
                prop_assert!(invalid, "{}", e);
            }
        }
    }
}
