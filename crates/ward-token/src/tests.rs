use super::*;

fn grant(dir: &Path, ttl: Duration) -> Grant {
    Grant {
        folder: dir.to_path_buf(),
        rights: vec![Right::Read, Right::Write],
        session: "s1".into(),
        generation: 1,
        expires: SystemTime::now() + ttl,
    }
}

#[test]
fn a_token_allows_its_folder_and_rights_only() {
    let keys = tempfile::tempdir().unwrap();
    let proj = tempfile::tempdir().unwrap();
    let a = Authority::open(keys.path()).unwrap();
    let t = a
        .issue(&grant(proj.path(), Duration::from_secs(3600)))
        .unwrap();
    let f = proj.path().join("src/main.rs");
    let v = a.verify(&t, Right::Write, &f).unwrap();
    assert_eq!((v.session.as_str(), v.generation), ("s1", 1));
    assert_eq!(v.id.len(), 128);
    // A sibling whose name starts like the folder is outside it.
    let sibling = PathBuf::from(format!("{}-other/x", proj.path().display()));
    assert!(matches!(
        a.verify(&t, Right::Write, &sibling),
        Err(TokenError::Denied(_))
    ));
    assert!(matches!(
        a.verify(&t, Right::Write, Path::new("/etc/passwd")),
        Err(TokenError::Denied(_))
    ));
    // Another root key's token, and a flipped byte, are invalid.
    let other = tempfile::tempdir().unwrap();
    let b = Authority::open(other.path()).unwrap();
    let forged = b
        .issue(&grant(proj.path(), Duration::from_secs(3600)))
        .unwrap();
    assert!(matches!(
        a.verify(&forged, Right::Write, &f),
        Err(TokenError::Invalid(_))
    ));
    let mut bytes = t.clone().into_bytes();
    let i = bytes.len() / 2;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(bytes).unwrap();
    assert!(a.verify(&flipped, Right::Write, &f).is_err());
}

#[test]
fn expired_revoked_and_rotated_tokens_are_refused() {
    let keys = tempfile::tempdir().unwrap();
    let proj = tempfile::tempdir().unwrap();
    let a = Authority::open(keys.path()).unwrap();
    let mut g = grant(proj.path(), Duration::ZERO);
    g.expires = SystemTime::now() - Duration::from_secs(10);
    let old = a.issue(&g).unwrap();
    let e = a.verify(&old, Right::Write, proj.path()).unwrap_err();
    assert!(e.to_string().contains("expired"), "{e}");

    let t = a
        .issue(&grant(proj.path(), Duration::from_secs(3600)))
        .unwrap();
    let (next, v) = a
        .rotate(&t, proj.path(), Duration::from_secs(3600))
        .unwrap();
    assert_eq!(v.generation, 1);
    assert_eq!(
        a.verify(&next, Right::Write, proj.path())
            .unwrap()
            .generation,
        2
    );
    let e = a.verify(&t, Right::Write, proj.path()).unwrap_err();
    assert!(matches!(e, TokenError::Revoked(_)), "{e}");
    assert!(a.inspect(&t).unwrap().revoked);
    a.revoke_session("s1").unwrap();
    let e = a.verify(&next, Right::Write, proj.path()).unwrap_err();
    assert_eq!(e, TokenError::Revoked("session s1".into()));
}

#[test]
fn a_holder_can_narrow_but_not_widen() {
    let keys = tempfile::tempdir().unwrap();
    let proj = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(proj.path().join("docs")).unwrap();
    let a = Authority::open(keys.path()).unwrap();
    let t = a
        .issue(&grant(proj.path(), Duration::from_secs(3600)))
        .unwrap();
    let ro = attenuate(
        &t,
        a.public_key(),
        &Attenuation {
            read_only: true,
            ..Attenuation::default()
        },
    )
    .unwrap();
    let f = proj.path().join("a.txt");
    assert!(a.verify(&ro, Right::Read, &f).is_ok());
    assert!(matches!(
        a.verify(&ro, Right::Write, &f),
        Err(TokenError::Denied(_))
    ));
    let docs = attenuate(
        &t,
        a.public_key(),
        &Attenuation {
            folder: Some(proj.path().join("docs")),
            ..Attenuation::default()
        },
    )
    .unwrap();
    assert!(a
        .verify(&docs, Right::Write, &proj.path().join("docs/x.md"))
        .is_ok());
    assert!(a.verify(&docs, Right::Write, &f).is_err());
    // Revoking the original revokes what was derived from it.
    a.revoke(&t).unwrap();
    assert!(matches!(
        a.verify(&docs, Right::Write, &proj.path().join("docs/x.md")),
        Err(TokenError::Revoked(_))
    ));
    assert_eq!(a.inspect(&docs).unwrap().blocks.len(), 2);
}

#[test]
fn the_root_key_is_private_and_reused() {
    use std::os::unix::fs::PermissionsExt;
    let keys = tempfile::tempdir().unwrap();
    let a = Authority::open(&keys.path().join("k")).unwrap();
    let b = Authority::open(&keys.path().join("k")).unwrap();
    assert_eq!(a.public_key().to_bytes(), b.public_key().to_bytes());
    let mode = std::fs::metadata(keys.path().join("k").join(KEY_FILE))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    std::fs::set_permissions(
        keys.path().join("k").join(KEY_FILE),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    assert!(Authority::open(&keys.path().join("k")).is_err());
}
