//! The node key file and signatures.

use std::os::unix::fs::PermissionsExt;

use forge_proofs::{KeyError, NodeKey, SignatureError, verify_signature};

#[test]
fn the_key_is_created_once_private_and_reloaded() {
    let dir = tempfile::tempdir().unwrap();
    let node_dir = dir.path().join("a/b");
    let key = NodeKey::load_or_create(&node_dir).unwrap();
    let path = node_dir.join(NodeKey::FILE_NAME);
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.len(), 32);
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let again = NodeKey::load_or_create(&node_dir).unwrap();
    assert_eq!(key.public_key(), again.public_key());
    assert_eq!(
        std::fs::read_dir(&node_dir).unwrap().count(),
        1,
        "no temp files left behind"
    );
    assert!(
        !format!("{key:?}").contains(&format!("{:?}", std::fs::read(&path).unwrap())),
        "Debug hides the secret"
    );
}

#[test]
fn concurrent_first_use_agrees_on_one_key() {
    let dir = tempfile::tempdir().unwrap();
    let keys: Vec<[u8; 32]> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| s.spawn(|| NodeKey::load_or_create(dir.path()).unwrap().public_key()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(keys.windows(2).all(|w| w[0] == w[1]), "{keys:?}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn bad_key_files_are_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(NodeKey::FILE_NAME);
    NodeKey::load_or_create(dir.path()).unwrap();

    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    let err = NodeKey::load_or_create(dir.path()).unwrap_err();
    assert!(
        matches!(err, KeyError::InsecurePermissions { mode: 0o640, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("chmod 600"));
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o604)).unwrap();
    assert!(matches!(
        NodeKey::load_or_create(dir.path()),
        Err(KeyError::InsecurePermissions { .. })
    ));

    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    for len in [0, 31, 33, 64] {
        std::fs::write(&path, vec![7u8; len]).unwrap();
        let err = NodeKey::load_or_create(dir.path()).unwrap_err();
        assert!(
            matches!(err, KeyError::BadLength { len: l, .. } if l == len as u64),
            "{err}"
        );
    }

    let other = tempfile::tempdir().unwrap();
    std::fs::create_dir(other.path().join(NodeKey::FILE_NAME)).unwrap();
    assert!(matches!(
        NodeKey::load_or_create(other.path()),
        Err(KeyError::NotAFile { .. })
    ));
}

#[test]
fn signatures_verify_and_every_failure_is_typed() {
    let key = NodeKey::from_secret(&[3; 32]);
    let other = NodeKey::generate().unwrap();
    let sig = key.sign(b"message");
    verify_signature(&key.public_key(), b"message", &sig).unwrap();
    assert_eq!(
        verify_signature(&key.public_key(), b"messagf", &sig),
        Err(SignatureError::Invalid)
    );
    assert_eq!(
        verify_signature(&other.public_key(), b"message", &sig),
        Err(SignatureError::Invalid)
    );
    let mut bad = sig;
    bad[10] ^= 1;
    assert_eq!(
        verify_signature(&key.public_key(), b"message", &bad),
        Err(SignatureError::Invalid)
    );
    let mut bad = sig;
    bad[63] |= 0xe0; // s not reduced
    assert_eq!(
        verify_signature(&key.public_key(), b"message", &bad),
        Err(SignatureError::Invalid)
    );
    // The identity point is a weak (small-order) key.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    assert_eq!(
        verify_signature(&identity, b"message", &sig),
        Err(SignatureError::BadPublicKey)
    );
    assert_ne!(
        NodeKey::generate().unwrap().public_key(),
        other.public_key()
    );
}
