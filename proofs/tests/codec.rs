//! The canonical writer and reader.

use forge_proofs::{DecodeError, EncodeError, Reader, Writer};

fn sample() -> Vec<u8> {
    let mut w = Writer::new();
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
    w.into_bytes()
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
    r.finish()
}

#[test]
fn round_trip_is_little_endian_and_exact() {
    let bytes = sample();
    assert_eq!(&bytes[..4], b"TEST");
    assert_eq!(&bytes[4..6], &[1, 0]);
    assert_eq!(&bytes[7..9], &[0x34, 0x12]);
    assert_eq!(bytes.len(), 4 + 2 + 1 + 2 + 4 + 8 + 16 + 5 + (4 + 5) + (4 + 5));
    read(&bytes).unwrap();
}

#[test]
fn every_truncation_names_a_field() {
    let bytes = sample();
    for cut in 0..bytes.len() {
        match read(&bytes[..cut]) {
            Err(DecodeError::Truncated { field, needed, available }) => {
                assert!(needed > available, "cut {cut}: {field}");
            }
            other => panic!("cut {cut}: {other:?}"),
        }
    }
    assert_eq!(read(&[bytes.clone(), vec![0, 0]].concat()), Err(DecodeError::TrailingBytes { count: 2 }));
}

#[test]
fn magic_version_oversize_and_utf8_are_typed() {
    let mut bytes = sample();
    bytes[0] = b'X';
    assert!(matches!(read(&bytes), Err(DecodeError::BadMagic { expected: [b'T', b'E', b'S', b'T'], found }) if found[0] == b'X'));
    assert!(matches!(read(b"TX"), Err(DecodeError::BadMagic { .. })));
    let mut bytes = sample();
    bytes[4] = 2;
    assert_eq!(read(&bytes), Err(DecodeError::UnknownVersion { supported: 1, found: 2 }));

    let mut w = Writer::new();
    w.bytes("blob", &[0; 9], 9).unwrap();
    let mut r = Reader::new(w.as_bytes());
    assert_eq!(r.bytes("blob", 8), Err(DecodeError::Oversize { field: "blob", len: 9, max: 8 }));
    assert_eq!(
        Writer::new().bytes("blob", &[0; 9], 8),
        Err(EncodeError::Oversize { field: "blob", len: 9, max: 8 })
    );

    // A huge count is refused before anything is allocated for it.
    let mut w = Writer::new();
    w.u32(1_000_000);
    let mut r = Reader::new(w.as_bytes());
    assert!(matches!(r.count("list", u32::MAX, 8), Err(DecodeError::Truncated { field: "list", .. })));

    let mut w = Writer::new();
    w.bytes("name", &[0xff, 0xfe], 8).unwrap();
    assert!(matches!(Reader::new(w.as_bytes()).string("name", 8), Err(DecodeError::InvalidValue { field: "name", .. })));
}
