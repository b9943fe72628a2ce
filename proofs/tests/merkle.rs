//! Merkle trees and range proofs, exhaustively on small trees.

use forge_proofs::{
    DType, Hash, MerkleError, MerkleTree, RangeProof, RowGroup, leaf_hash, node_hash, verify_range,
};

fn leaves(n: usize) -> Vec<Hash> {
    (0..n)
        .map(|i| {
            leaf_hash(
                RowGroup::Output,
                0,
                i as u32,
                1,
                DType::F32,
                &[i as f32, 1.5],
            )
            .unwrap()
        })
        .collect()
}

/// The root by the definition, recursively: no shared code with the tree.
fn reference_root(level: &[Hash]) -> Hash {
    if level.len() == 1 {
        return level[0];
    }
    let up: Vec<Hash> = level
        .chunks(2)
        .map(|c| {
            if c.len() == 2 {
                node_hash(&c[0], &c[1])
            } else {
                c[0]
            }
        })
        .collect();
    reference_root(&up)
}

/// The size of the minimal sibling set, by brute force: a node is needed when
/// it is not computable from the range but its sibling is.
fn minimal_proof_len(n: usize, a: usize, b: usize) -> usize {
    let mut known: Vec<bool> = (0..n).map(|i| (a..=b).contains(&i)).collect();
    let mut needed = 0;
    while known.len() > 1 {
        for (i, k) in known.iter().enumerate() {
            let sib = i ^ 1;
            if !k && sib < known.len() && known[sib] {
                needed += 1;
            }
        }
        known = known.chunks(2).map(|c| c.iter().any(|&k| k)).collect();
    }
    needed
}

/// The boundary siblings a range uses, per level: (level width rounded up to
/// a pair, left sibling, right sibling). Two tree sizes with equal paths give
/// the same root from the same range and proof.
fn tree_path(n: usize, a: usize, b: usize) -> Vec<(Option<usize>, Option<usize>)> {
    let (mut lo, mut hi, mut n) = (a, b, n);
    let mut path = vec![];
    while n > 1 {
        path.push((
            (lo % 2 == 1).then(|| lo - 1),
            (hi % 2 == 0 && hi + 1 < n).then_some(hi + 1),
        ));
        (lo, hi, n) = (lo / 2, hi / 2, n.div_ceil(2));
    }
    path
}

#[test]
fn every_range_of_every_tree_up_to_40_leaves_verifies_with_a_minimal_proof() {
    for n in 1..=40 {
        let l = leaves(n);
        let tree = MerkleTree::from_leaves(l.clone());
        let root = tree.root();
        assert_eq!(root, reference_root(&l), "n = {n}");
        for a in 0..n {
            for b in a..n {
                let proof = tree.prove_range(a, b).unwrap();
                assert_eq!(
                    proof.siblings.len(),
                    minimal_proof_len(n, a, b),
                    "n {n} range {a}..={b}"
                );
                verify_range(&root, n, a, &l[a..=b], &proof)
                    .unwrap_or_else(|e| panic!("n {n} {a}..={b}: {e}"));
            }
        }
    }
}

#[test]
fn every_tampering_of_every_range_is_rejected() {
    for n in 1..=40 {
        let l = leaves(n);
        let tree = MerkleTree::from_leaves(l.clone());
        let root = tree.root();
        for a in 0..n {
            for b in a..n {
                let proof = tree.prove_range(a, b).unwrap();
                let range = &l[a..=b];
                let rejects = |first: usize, ls: &[Hash], p: &RangeProof, n_leaves: usize| {
                    verify_range(&root, n_leaves, first, ls, p).is_err()
                };
                // Shifted position.
                if b + 1 < n {
                    assert!(
                        rejects(a + 1, range, &proof, n),
                        "n {n} {a}..={b} shifted right"
                    );
                }
                if a > 0 {
                    assert!(
                        rejects(a - 1, range, &proof, n),
                        "n {n} {a}..={b} shifted left"
                    );
                }
                // Wrong leaf counts.
                if range.len() > 1 {
                    assert!(rejects(a, &range[1..], &proof, n));
                    assert!(rejects(a, &range[..range.len() - 1], &proof, n));
                }
                if b + 1 < n {
                    assert!(rejects(a, &l[a..=b + 1], &proof, n));
                }
                // Wrong tree size: rejected unless promotion makes both trees
                // take the very same path from this range to the root (the
                // verifier's size comes from the signed receipt, and leaves
                // bind their own positions).
                for other in [n.saturating_sub(1), n + 1] {
                    if other > b && other != n {
                        let same_path = tree_path(other, a, b) == tree_path(n, a, b);
                        assert_eq!(
                            !rejects(a, range, &proof, other),
                            same_path,
                            "n {n} {a}..={b} as {other}"
                        );
                    }
                }
                // A flipped bit in any leaf or sibling.
                for i in 0..range.len() {
                    let mut bad = range.to_vec();
                    bad[i][i % 32] ^= 1;
                    assert!(rejects(a, &bad, &proof, n));
                }
                for i in 0..proof.siblings.len() {
                    let mut bad = proof.clone();
                    bad.siblings[i][31] ^= 0x80;
                    assert!(matches!(
                        verify_range(&root, n, a, range, &bad),
                        Err(MerkleError::RootMismatch { .. })
                    ));
                }
                // Extra and missing siblings.
                let mut extra = proof.clone();
                extra.siblings.push([7; 32]);
                assert!(matches!(
                    verify_range(&root, n, a, range, &extra),
                    Err(MerkleError::ExtraSiblings { extra: 1 })
                ));
                if let Some((_, rest)) = proof.siblings.split_last() {
                    let missing = RangeProof {
                        siblings: rest.to_vec(),
                    };
                    assert!(matches!(
                        verify_range(&root, n, a, range, &missing),
                        Err(MerkleError::MissingSiblings { .. })
                    ));
                }
                // The wrong root.
                let mut other_root = root;
                other_root[0] ^= 1;
                assert!(verify_range(&other_root, n, a, range, &proof).is_err());
            }
        }
    }
}

#[test]
fn degenerate_inputs_are_typed_errors() {
    let l = leaves(5);
    let tree = MerkleTree::from_leaves(l.clone());
    let root = tree.root();
    let empty = RangeProof::default();
    assert_eq!(tree.prove_range(3, 2), Err(MerkleError::EmptyRange));
    assert!(matches!(
        tree.prove_range(2, 5),
        Err(MerkleError::OutOfBounds { n_leaves: 5, .. })
    ));
    assert_eq!(
        MerkleTree::from_leaves(vec![]).prove_range(0, 0),
        Err(MerkleError::EmptyTree)
    );
    assert_eq!(
        verify_range(&root, 0, 0, &l[..1], &empty),
        Err(MerkleError::EmptyTree)
    );
    assert_eq!(
        verify_range(&root, 5, 0, &[], &empty),
        Err(MerkleError::EmptyRange)
    );
    assert!(matches!(
        verify_range(&root, 5, 4, &l[..2], &empty),
        Err(MerkleError::OutOfBounds { .. })
    ));
    assert!(matches!(
        verify_range(&root, 5, usize::MAX, &l[..2], &empty),
        Err(MerkleError::OutOfBounds { .. })
    ));
    // One leaf: the root is the leaf, the proof is empty.
    let one = MerkleTree::from_leaves(l[..1].to_vec());
    assert_eq!(one.root(), l[0]);
    assert!(one.prove_range(0, 0).unwrap().siblings.is_empty());
    assert_ne!(MerkleTree::from_leaves(vec![]).root(), [0; 32]);
}

/// Under `F32KvF16` a key/value leaf hashes its rows as f16 (half the
/// bytes) and the dtype tag 2, an output leaf its rows as f32 with tag 2;
/// a value that is not an f16 is refused, not rounded.
#[test]
fn f16_key_value_leaves_hash_the_documented_bytes() {
    use forge_proofs::Elem;
    let rows = [1.0f32, -2.0, 3.5, 0.25, 65504.0, -0.0];
    let kv = leaf_hash(RowGroup::KeyValue, 3, 16, 1, DType::F32KvF16, &rows).unwrap();
    let mut bytes = vec![];
    for v in rows {
        bytes.extend_from_slice(&forge_engine::f16::from_f32(v).to_bits().to_le_bytes());
    }
    for field in [3u32, 16, 1] {
        bytes.extend_from_slice(&field.to_le_bytes());
    }
    bytes.push(2);
    let kv_key = blake3::derive_key("forge.kv.v3", b"");
    assert_eq!(kv, *blake3::keyed_hash(&kv_key, &bytes).as_bytes());
    assert_ne!(
        kv,
        leaf_hash(RowGroup::KeyValue, 3, 16, 1, DType::F32, &rows).unwrap(),
        "the dtype is bound"
    );
    let out = leaf_hash(RowGroup::Output, 3, 16, 1, DType::F32KvF16, &rows).unwrap();
    let mut bytes = vec![];
    rows.iter()
        .for_each(|v| bytes.extend_from_slice(&v.to_le_bytes()));
    for field in [3u32, 16, 1] {
        bytes.extend_from_slice(&field.to_le_bytes());
    }
    bytes.push(2);
    let key = blake3::derive_key("forge.act.v3", b"");
    assert_eq!(out, *blake3::keyed_hash(&key, &bytes).as_bytes());
    assert_eq!(DType::F32KvF16.elem(RowGroup::KeyValue), Elem::F16);
    assert_eq!(DType::F32KvF16.elem(RowGroup::Output), Elem::F32);
    // 1 + 2^-12 lies between two f16s: not a value of an f16 row.
    let mut off = rows;
    off[2] = 1.0 + 1.0 / 4096.0;
    assert_eq!(
        leaf_hash(RowGroup::KeyValue, 3, 16, 1, DType::F32KvF16, &off),
        Err(MerkleError::NotF16 { index: 2 })
    );
    assert!(leaf_hash(RowGroup::Output, 3, 16, 1, DType::F32KvF16, &off).is_ok());
}

#[test]
fn leaves_and_nodes_are_domain_separated() {
    use RowGroup::{KeyValue, Output};
    let rows = [1.0f32, -2.0, 3.5, 0.25];
    let leaf = |group, layer, first, count, rows: &[f32]| {
        leaf_hash(group, layer, first, count, DType::F32, rows).unwrap()
    };
    let base = leaf(Output, 1, 2, 2, &rows);
    assert_ne!(
        base,
        leaf(Output, 2, 1, 2, &rows),
        "layer and position are bound"
    );
    assert_ne!(base, leaf(Output, 1, 3, 2, &rows));
    assert_ne!(base, leaf(Output, 1, 2, 4, &rows), "the row count is bound");
    assert_ne!(base, leaf(KeyValue, 1, 2, 2, &rows), "so is the row group");
    assert_ne!(base, leaf(Output, 1, 2, 2, &[1.0, -2.0, 3.5, 0.250_000_03]));
    assert_ne!(base, leaf(Output, 1, 2, 2, &rows[..2]));
    // The leaf keys are blake3::derive_key("forge.act.v3" / "forge.kv.v3",
    // b"") over the documented bytes: the rows, then layer, first position,
    // row count and dtype tag.
    let mut bytes = vec![];
    rows.iter()
        .for_each(|v| bytes.extend_from_slice(&v.to_le_bytes()));
    for field in [1u32, 2, 2] {
        bytes.extend_from_slice(&field.to_le_bytes());
    }
    bytes.push(DType::F32.tag());
    let key = blake3::derive_key("forge.act.v3", b"");
    assert_eq!(base, *blake3::keyed_hash(&key, &bytes).as_bytes());
    let kv_key = blake3::derive_key("forge.kv.v3", b"");
    assert_eq!(
        leaf(KeyValue, 1, 2, 2, &rows),
        *blake3::keyed_hash(&kv_key, &bytes).as_bytes()
    );
    let nkey = blake3::derive_key("forge.node.v1", b"");
    let cat: Vec<u8> = [base, base].concat();
    assert_eq!(
        node_hash(&base, &base),
        *blake3::keyed_hash(&nkey, &cat).as_bytes()
    );
    // A block of many chunks hashes as one stream.
    let long: Vec<f32> = (0..16 * 576).map(|i| i as f32 * 0.25).collect();
    let mut bytes = vec![];
    long.iter()
        .for_each(|v| bytes.extend_from_slice(&v.to_le_bytes()));
    bytes.extend_from_slice(&[0u8; 4]);
    bytes.extend_from_slice(&0u32.to_le_bytes());
    bytes.extend_from_slice(&16u32.to_le_bytes());
    bytes.push(1);
    assert_eq!(
        leaf(Output, 0, 0, 16, &long),
        *blake3::keyed_hash(&key, &bytes).as_bytes()
    );
}

#[test]
fn wide_trees_hash_levels_in_parallel_to_the_same_root() {
    let n = 20_001;
    let l: Vec<Hash> = (0..n)
        .map(|i| *blake3::hash(&(i as u64).to_le_bytes()).as_bytes())
        .collect();
    let tree = MerkleTree::from_leaves(l.clone());
    assert_eq!(tree.root(), reference_root(&l));
    let proof = tree.prove_range(9_999, 12_345).unwrap();
    verify_range(&tree.root(), n, 9_999, &l[9_999..=12_345], &proof).unwrap();
}
