//! The canonical writer and reader.

use forge_proofs::{DecodeError, EncodeError, Reader, Writer};

fn sample() -> Vec<u8> {
    let mut w = Writer::new();
    write_sample(&mut w);
    w.into_bytes()
}

fn write_sample(w: &mut Writer) {
    w.array(b"TEST");
    w.u16(1);
    w.u8(0xab);
    w.u16(0x1234);
    w.u32(0xdead_beef);
    w.u64(u64::MAX - 1);
    w.u128(u128::MAX / 3);
    w.array(&[9u8; 5]);
    w.bytes("blob", b"hello", 8).unwrap();
    w.string("name", "forge", 8).unwrap();
    w.f32s(&[1.5, -0.0, f32::from_bits(0x7fc0_0001)]);
}

fn read(bytes: &[u8]) -> Result<(), DecodeError> {
    let mut r = Reader::new(bytes);
    r.magic(*b"TEST")?;
    r.version(1)?;
    assert_eq!(r.u8("a")?, 0xab);
    assert_eq!(r.u16("b")?, 0x1234);
    assert_eq!(r.u32("c")?, 0xdead_beef);
    assert_eq!(r.u64("d")?, u64::MAX - 1);
    assert_eq!(r.u128("e")?, u128::MAX / 3);
    assert_eq!(r.array::<5>("f")?, [9; 5]);
    assert_eq!(r.bytes("blob", 8)?, b"hello");
    assert_eq!(r.string("name", 8)?, "forge");
    let floats: Vec<u32> = r.f32s("g", 3)?.iter().map(|x| x.to_bits()).collect();
    assert_eq!(
        floats,
        [1.5f32.to_bits(), (-0.0f32).to_bits(), 0x7fc0_0001],
        "bit patterns kept, NaN payload included"
    );
    r.finish()
}

#[test]
fn round_trip_is_little_endian_and_exact() {
    let bytes = sample();
    assert_eq!(&bytes[..4], b"TEST");
    assert_eq!(&bytes[4..6], &[1, 0]);
    assert_eq!(&bytes[7..9], &[0x34, 0x12]);
    assert_eq!(
        bytes.len(),
        4 + 2 + 1 + 2 + 4 + 8 + 16 + 5 + (4 + 5) + (4 + 5) + 3 * 4
    );
    read(&bytes).unwrap();
}

#[test]
fn a_hashing_writer_hashes_exactly_the_bytes_a_buffer_would_hold() {
    let bytes = sample();
    let mut plain = Writer::hashing(blake3::Hasher::new());
    write_sample(&mut plain);
    assert_eq!(plain.finalize(), *blake3::hash(&bytes).as_bytes());
    assert!(plain.as_bytes().is_empty(), "nothing is kept");
    let mut keyed = Writer::hashing(blake3::Hasher::new_derive_key("forge.test"));
    write_sample(&mut keyed);
    let mut h = blake3::Hasher::new_derive_key("forge.test");
    h.update(&bytes);
    assert_eq!(keyed.finalize(), *h.finalize().as_bytes());
    // Large float runs go through in chunks; the hash must not depend on that.
    let many: Vec<f32> = (0..5000).map(|i| i as f32 * 0.25).collect();
    let (mut a, mut b) = (Writer::new(), Writer::hashing(blake3::Hasher::new()));
    a.f32s(&many);
    b.f32s(&many);
    assert_eq!(b.finalize(), *blake3::hash(a.as_bytes()).as_bytes());
    // A byte string of megabytes (an audit's openings) is hashed split
    // across the pool; after an odd number of bytes, so that it starts
    // inside a chunk, and inside a pool of two threads as verifiers run.
    let blob: Vec<u8> = (0..(3 << 20) + 7)
        .map(|i: u32| (i * 31 % 251) as u8)
        .collect();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    for key in [None, Some("forge.test")] {
        let hasher = || key.map_or_else(blake3::Hasher::new, blake3::Hasher::new_derive_key);
        let write = |w: &mut Writer| {
            w.u8(1);
            w.bytes("blob", &blob, u32::MAX).unwrap();
            w.u16(2);
        };
        let mut a = Writer::new();
        write(&mut a);
        let mut expected = hasher();
        expected.update(a.as_bytes());
        let hashed = pool.install(|| {
            let mut b = Writer::hashing(hasher());
            write(&mut b);
            b.finalize()
        });
        assert_eq!(hashed, *expected.finalize().as_bytes());
    }
}

#[test]
fn every_truncation_names_a_field() {
    let bytes = sample();
    for cut in 0..bytes.len() {
        match read(&bytes[..cut]) {
            Err(DecodeError::Truncated {
                field,
                needed,
                available,
            }) => {
                assert!(needed > available, "cut {cut}: {field}");
            }
            other => panic!("cut {cut}: {other:?}"),
        }
    }
    assert_eq!(
        read(&[bytes.clone(), vec![0, 0]].concat()),
        Err(DecodeError::TrailingBytes { count: 2 })
    );
}

#[test]
fn magic_version_oversize_and_utf8_are_typed() {
    let mut bytes = sample();
    bytes[0] = b'X';
    assert!(
        matches!(read(&bytes), Err(DecodeError::BadMagic { expected: [b'T', b'E', b'S', b'T'], found }) if found[0] == b'X')
    );
    assert!(matches!(read(b"TX"), Err(DecodeError::BadMagic { .. })));
    let mut bytes = sample();
    bytes[4] = 2;
    assert_eq!(
        read(&bytes),
        Err(DecodeError::UnknownVersion {
            supported: 1,
            found: 2
        })
    );

    let mut w = Writer::new();
    w.bytes("blob", &[0; 9], 9).unwrap();
    let mut r = Reader::new(w.as_bytes());
    assert_eq!(
        r.bytes("blob", 8),
        Err(DecodeError::Oversize {
            field: "blob",
            len: 9,
            max: 8
        })
    );
    assert_eq!(
        Writer::new().bytes("blob", &[0; 9], 8),
        Err(EncodeError::Oversize {
            field: "blob",
            len: 9,
            max: 8
        })
    );

    // A huge count is refused before anything is allocated for it.
    let mut w = Writer::new();
    w.u32(1_000_000);
    let mut r = Reader::new(w.as_bytes());
    assert!(matches!(
        r.count("list", u32::MAX, 8),
        Err(DecodeError::Truncated { field: "list", .. })
    ));

    let mut w = Writer::new();
    w.bytes("name", &[0xff, 0xfe], 8).unwrap();
    assert!(matches!(
        Reader::new(w.as_bytes()).string("name", 8),
        Err(DecodeError::InvalidValue { field: "name", .. })
    ));
}
