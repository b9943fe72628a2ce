//! Groth16 round trips: honest proofs verify, tampered statements and bytes do not.

use std::sync::OnceLock;

use forge_circuits::rand_core::{RngCore, SeedableRng};
use forge_circuits::{
    ChaCha20Rng, CircuitError, CuProof, CuStatement, FlopConfig, PROOF_BYTES, ProvingKey,
    VerifyingKey, flops, pk_from_bytes, pk_to_bytes, prove, setup, verify, vk_from_bytes, vk_hash,
    vk_of, vk_to_bytes,
};

const SMOLLM2_135M: FlopConfig = FlopConfig {
    layers: 30,
    d_model: 576,
    heads: 9,
    kv_heads: 3,
    head_dim: 64,
    ffn: 1536,
    vocab: 49152,
};

fn keys() -> &'static (ProvingKey, VerifyingKey) {
    static KEYS: OnceLock<(ProvingKey, VerifyingKey)> = OnceLock::new();
    KEYS.get_or_init(|| setup([1; 32]))
}

fn rng() -> ChaCha20Rng {
    ChaCha20Rng::from_seed([5; 32])
}

fn statement(cfg: FlopConfig, n_prompt: u64, n_gen: u64, start: u64) -> CuStatement {
    CuStatement {
        cfg,
        n_prompt,
        n_gen,
        start,
        flops: flops(&cfg, n_prompt, n_gen, start).unwrap(),
        activation_root: *blake3::hash(b"root").as_bytes(),
        header_hash: *blake3::hash(b"header").as_bytes(),
    }
}

/// Same statement with FLOPs recomputed honestly (so only the binding can reject it).
fn rebilled(mut s: CuStatement) -> CuStatement {
    s.flops = flops(&s.cfg, s.n_prompt, s.n_gen, s.start).unwrap();
    s
}

fn honest() -> (CuStatement, CuProof) {
    let s = statement(SMOLLM2_135M, 200, 56, 0);
    let proof = prove(&keys().0, &s, &mut rng()).unwrap();
    (s, proof)
}

#[test]
fn honest_proofs_verify() {
    let (pk, vk) = keys();
    for s in [
        statement(SMOLLM2_135M, 1, 1, 0),
        statement(SMOLLM2_135M, 200, 56, 0),
        statement(SMOLLM2_135M, 200, 56, 150), // prefix-cache hit
        statement(SMOLLM2_135M, 0, 1, 0),      // nothing forwarded
    ] {
        let proof = prove(pk, &s, &mut rng()).unwrap();
        assert_eq!(verify(vk, &s, &proof), Ok(()), "{s:?}");
    }
}

#[test]
fn wrong_flops_are_refused_before_proving() {
    let s = statement(SMOLLM2_135M, 200, 56, 0);
    for claimed in [s.flops + 1, s.flops - 1, 0, u128::MAX] {
        let lie = CuStatement {
            flops: claimed,
            ..s
        };
        assert_eq!(
            prove(&keys().0, &lie, &mut rng()),
            Err(CircuitError::FlopsMismatch {
                claimed,
                expected: Some(s.flops)
            })
        );
    }
    let bad_request = CuStatement { n_gen: 0, ..s };
    assert!(matches!(
        prove(&keys().0, &bad_request, &mut rng()),
        Err(CircuitError::InvalidRequest { .. })
    ));
}

#[test]
fn proof_does_not_verify_for_other_statements() {
    let vk = &keys().1;
    let (s, proof) = honest();
    let mut root = s.activation_root;
    root[0] ^= 1; // low half
    let mut root_hi = s.activation_root;
    root_hi[31] ^= 0x80; // high half
    let mut header = s.header_hash;
    header[5] ^= 1;
    let mut header_hi = s.header_hash;
    header_hi[20] ^= 1;
    let other_cfg = FlopConfig { ffn: 1537, ..s.cfg };
    let swapped_heads = FlopConfig {
        heads: s.cfg.kv_heads,
        kv_heads: s.cfg.heads,
        ..s.cfg
    };

    let cases = [
        (
            "FLOPs + 1",
            CuStatement {
                flops: s.flops + 1,
                ..s
            },
        ),
        (
            "FLOPs - 1",
            CuStatement {
                flops: s.flops - 1,
                ..s
            },
        ),
        (
            "activation root (low)",
            CuStatement {
                activation_root: root,
                ..s
            },
        ),
        (
            "activation root (high)",
            CuStatement {
                activation_root: root_hi,
                ..s
            },
        ),
        (
            "header hash (low)",
            CuStatement {
                header_hash: header,
                ..s
            },
        ),
        (
            "header hash (high)",
            CuStatement {
                header_hash: header_hi,
                ..s
            },
        ),
        (
            "n_gen, same FLOPs",
            CuStatement {
                n_gen: s.n_gen + 1,
                ..s
            },
        ),
        (
            "n_gen, rebilled",
            rebilled(CuStatement {
                n_gen: s.n_gen + 1,
                ..s
            }),
        ),
        (
            "n_prompt, rebilled",
            rebilled(CuStatement {
                n_prompt: s.n_prompt - 1,
                ..s
            }),
        ),
        ("start, rebilled", rebilled(CuStatement { start: 10, ..s })),
        (
            "config, same FLOPs",
            CuStatement {
                cfg: other_cfg,
                ..s
            },
        ),
        (
            "config, rebilled",
            rebilled(CuStatement {
                cfg: other_cfg,
                ..s
            }),
        ),
        (
            "heads swapped, rebilled",
            rebilled(CuStatement {
                cfg: swapped_heads,
                ..s
            }),
        ),
    ];
    for (what, other) in cases {
        assert_ne!(other, s);
        assert_eq!(
            verify(vk, &other, &proof),
            Err(CircuitError::ProofRejected),
            "{what}"
        );
    }
    // The untouched statement still verifies (the cases above changed copies).
    assert_eq!(verify(vk, &s, &proof), Ok(()));
}

#[test]
fn proof_does_not_verify_under_another_setup() {
    let (s, proof) = honest();
    let (_, other_vk) = setup([2; 32]);
    assert_eq!(
        verify(&other_vk, &s, &proof),
        Err(CircuitError::ProofRejected)
    );
}

#[test]
fn malformed_statement_is_not_a_rejected_proof() {
    let (s, proof) = honest();
    let vk = &keys().1;
    let huge = CuStatement {
        cfg: FlopConfig {
            layers: 1 << 32,
            ..s.cfg
        },
        ..s
    };
    assert!(matches!(
        verify(vk, &huge, &proof),
        Err(CircuitError::OutOfRange {
            field: "layers",
            ..
        })
    ));
    let no_gen = CuStatement { n_gen: 0, ..s };
    assert!(matches!(
        verify(vk, &no_gen, &proof),
        Err(CircuitError::InvalidRequest { .. })
    ));
    let late_start = CuStatement {
        start: s.n_prompt + s.n_gen - 1,
        ..s
    };
    assert!(matches!(
        verify(vk, &late_start, &proof),
        Err(CircuitError::InvalidRequest { .. })
    ));
}

#[test]
fn proof_bytes_round_trip() {
    let (s, proof) = honest();
    let bytes = proof.to_bytes();
    assert_eq!(bytes.len(), PROOF_BYTES);
    assert_eq!(PROOF_BYTES, 128);
    let back = CuProof::from_bytes(&bytes).unwrap();
    assert_eq!(back, proof);
    assert_eq!(back.to_bytes(), bytes);
    assert_eq!(verify(&keys().1, &s, &back), Ok(()));
}

#[test]
fn bad_proof_bytes_are_errors_not_panics() {
    let (s, proof) = honest();
    let vk = &keys().1;
    let bytes = proof.to_bytes();

    for len in 0..PROOF_BYTES {
        assert!(matches!(
            CuProof::from_bytes(&bytes[..len]),
            Err(CircuitError::Malformed { .. })
        ));
    }
    let mut long = bytes.to_vec();
    long.push(0);
    assert!(matches!(
        CuProof::from_bytes(&long),
        Err(CircuitError::Malformed { .. })
    ));

    // Every single-bit flip either fails to decode or fails to verify.
    for bit in 0..PROOF_BYTES * 8 {
        let mut b = bytes;
        b[bit / 8] ^= 1 << (bit % 8);
        match CuProof::from_bytes(&b) {
            Err(CircuitError::Malformed { .. }) => {}
            Err(e) => panic!("bit {bit}: unexpected error {e}"),
            Ok(p) => assert_eq!(
                verify(vk, &s, &p),
                Err(CircuitError::ProofRejected),
                "bit {bit}"
            ),
        }
    }

    // Random garbage.
    let mut rng = ChaCha20Rng::from_seed([9; 32]);
    let mut decoded = 0;
    for _ in 0..200 {
        let mut b = [0u8; PROOF_BYTES];
        rng.fill_bytes(&mut b);
        if let Ok(p) = CuProof::from_bytes(&b) {
            decoded += 1;
            assert_eq!(verify(vk, &s, &p), Err(CircuitError::ProofRejected));
        }
    }
    assert!(
        decoded < 20,
        "{decoded} of 200 random strings decoded as proofs"
    );
    assert!(CuProof::from_bytes(&[0xff; PROOF_BYTES]).is_err());
}

#[test]
fn keys_round_trip_strictly() {
    let (pk, vk) = keys();
    let vk_bytes = vk_to_bytes(vk);
    let vk2 = vk_from_bytes(&vk_bytes).unwrap();
    assert_eq!(&vk2, vk);
    assert_eq!(vk_to_bytes(&vk2), vk_bytes);
    assert_eq!(&vk_of(pk), vk);

    let pk_bytes = pk_to_bytes(pk);
    let pk2 = pk_from_bytes(&pk_bytes).unwrap();
    assert_eq!(&pk2, pk);
    let s = statement(SMOLLM2_135M, 10, 10, 3);
    let proof = prove(&pk2, &s, &mut rng()).unwrap();
    assert_eq!(verify(&vk2, &s, &proof), Ok(()));

    // Truncated, extended and corrupted keys are errors.
    for bytes in [&vk_bytes, &pk_bytes] {
        for len in [0, 1, 31, bytes.len() / 2, bytes.len() - 1] {
            assert!(vk_from_bytes(&bytes[..len]).is_err());
            assert!(pk_from_bytes(&bytes[..len]).is_err());
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(vk_from_bytes(&long).is_err());
        assert!(pk_from_bytes(&long).is_err());
    }
    let mut rng = ChaCha20Rng::from_seed([11; 32]);
    for _ in 0..50 {
        let mut garbage = vk_bytes.clone();
        let i = (rng.next_u64() % garbage.len() as u64) as usize;
        garbage[i] ^= 1 << (rng.next_u64() % 8);
        // Either rejected, or (a flip in a length prefix aside) a different valid key.
        if let Ok(k) = vk_from_bytes(&garbage) {
            assert_ne!(&k, vk);
        }
    }
    // A verifying key with the wrong number of input bases is not a CU key:
    // the gamma_abc vector starts after alpha (32) and beta, gamma, delta (3 * 64).
    let mut short = vk_bytes.clone();
    let len_at = 32 + 3 * 64;
    assert_eq!(
        short[len_at], 16,
        "u64 little-endian length of gamma_abc_g1"
    );
    short[len_at] = 15;
    short.truncate(short.len() - 32);
    assert!(matches!(
        vk_from_bytes(&short),
        Err(CircuitError::Malformed { .. })
    ));
}

#[test]
fn vk_hash_is_stable_for_a_seed() {
    let (_, a) = setup([0; 32]);
    let (_, b) = setup([0; 32]);
    let (_, c) = setup([3; 32]);
    assert_eq!(vk_hash(&a), vk_hash(&b));
    assert_ne!(vk_hash(&a), vk_hash(&c));
    assert_eq!(vk_hash(&a), *blake3::hash(&vk_to_bytes(&a)).as_bytes());
    // Pinned: changes only if the circuit, the public-input order, the setup RNG
    // or the arkworks encoding changes (each of which needs a new pinned VK).
    let hex: String = vk_hash(&a).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        hex,
        "abc713258ba56f0315d77400b283f98222559a25a2a564a133c79afddbca2018"
    );
}
