use super::*;
use crate::error::PolicyError;
use crate::fix::fix_file_text;

const SEED: &str = include_str!("../../tests/data/seed-policy.rego");
const FIXED: &str = include_str!("../../../../examples/policy.rego");
const RULE: &str = "data.agent.security.allow_upload";

fn decide(p: &mut RegoPolicy, dest: &str, size: u64) -> Effect {
    p.decide(&Action::upload(dest, size)).effect
}

#[test]
fn seed_policy_as_written_gets_the_v0_explanation() {
    let err = RegoPolicy::from_source(Path::new("policy.rego"), SEED, RULE)
        .err()
        .expect("the seed's v0 text must be refused");
    assert!(matches!(err, PolicyError::RegoV0 { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("this is Rego v0 syntax; Ward accepts Rego v1 only"),
        "{msg}"
    );
    assert!(msg.contains("ward policy check --fix policy.rego"), "{msg}");
    assert!(
        msg.contains("policy.rego:3:"),
        "the v1 parser's position is kept: {msg}"
    );
}

#[test]
fn fixed_seed_policy_decides_uploads() {
    for text in [
        FIXED.to_string(),
        fix_file_text(Path::new("seed.rego"), SEED).unwrap(),
    ] {
        let mut p = RegoPolicy::from_source(Path::new("policy.rego"), &text, RULE).unwrap();
        assert_eq!(
            decide(&mut p, "uploads.acme.com", 5 << 20),
            Effect::Allow,
            "{text}"
        );
        assert_eq!(decide(&mut p, "uploads.acme.com", 20 << 20), Effect::Deny);
        assert_eq!(decide(&mut p, "evil.example.com", 5 << 20), Effect::Deny);
        assert_eq!(decide(&mut p, "storage.corp.local", 1), Effect::Allow);
        let d = p.decide(&Action::upload("evil.example.com", 1));
        assert_eq!(d.by, format!("policy:policy.rego#{RULE}"));
        assert!(d.reason.contains("is false"), "{}", d.reason);
    }
}

#[test]
fn the_vm_and_the_interpreter_agree() {
    let mut p = RegoPolicy::from_source(Path::new("policy.rego"), FIXED, RULE).unwrap();
    assert!(p.compiled(), "the seed policy compiles to the VM");
    for (dest, size) in [
        ("uploads.acme.com", 5u64 << 20),
        ("uploads.acme.com", 20 << 20),
        ("x.com", 1),
        ("storage.corp.local", 10485760),
    ] {
        let a = Action::upload(dest, size);
        let (vm, interp) = (p.decide(&a), p.decide_interpreted(&a));
        assert_eq!(vm, interp, "{dest} {size}");
    }
    let mut a = Action::upload("uploads.acme.com", 1);
    a.size = None;
    assert_eq!(p.decide(&a), p.decide_interpreted(&a), "missing size");
}

#[test]
fn broken_rego_is_a_parse_error_not_v0() {
    let err = check_source(Path::new("b.rego"), "package x\nallow if {\n").unwrap_err();
    assert!(matches!(err, PolicyError::Parse { .. }), "{err}");
}

#[test]
fn a_rule_the_file_does_not_define_is_refused() {
    let err = RegoPolicy::from_source(
        Path::new("p.rego"),
        FIXED,
        "data.agent.security.allow_dowload",
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("is not defined"), "{err}");
    let err = RegoPolicy::from_source(Path::new("p.rego"), FIXED, "data.other.allow_upload")
        .err()
        .unwrap();
    assert!(matches!(err, PolicyError::MissingRule { .. }));
}

#[test]
fn results_other_than_booleans() {
    let src = r#"package t
import rego.v1
default s := "ask"
s := "deny" if input.size > 10
o := {"effect": "ask", "reason": "looks unusual"}
bad := {"effect": 3}
num := 7
u if input.never
"#;
    let a = Action::upload("x.com", 1);
    let run = |rule: &str| {
        RegoPolicy::from_source(Path::new("t.rego"), src, rule)
            .unwrap()
            .decide(&a)
    };
    assert_eq!(run("data.t.s").effect, Effect::Ask);
    let o = run("data.t.o");
    assert_eq!(
        (o.effect, o.reason.as_str()),
        (Effect::Ask, "looks unusual")
    );
    assert_eq!(run("data.t.bad").effect, Effect::Deny);
    assert_eq!(run("data.t.num").effect, Effect::Deny);
    let u = run("data.t.u");
    assert_eq!(u.effect, Effect::Deny);
    assert!(u.reason.contains("undefined"));
}

#[test]
fn a_runaway_policy_is_stopped_and_denies() {
    let src = "package t\nslow if {\n  count([x | some x in numbers.range(1, 5000); some y in numbers.range(1, 5000); x > y]) > 0\n}\n";
    let mut p = RegoPolicy::from_source(Path::new("t.rego"), src, "data.t.slow").unwrap();
    let d = p.decide(&Action::upload("x.com", 1));
    assert_eq!(d.effect, Effect::Deny);
    assert!(d.reason.contains("failed"), "{}", d.reason);
}
