//! Groth16/BN254 keys, proofs and their byte encodings.

use ark_bn254::Bn254;
use ark_groth16::{Groth16, PreparedVerifyingKey, prepare_verifying_key};
use ark_relations::gr1cs::{ConstraintSynthesizer, ConstraintSystem, SynthesisMode};
use ark_serialize::{CanonicalDeserialize, CanonicalSerialize, SerializationError};
use ark_snark::SNARK;
use rand_chacha::{
    ChaCha20Rng,
    rand_core::{CryptoRng, RngCore, SeedableRng},
};

use crate::{
    CircuitError, CuStatement, circuit::CuCircuit, circuit::synthesis, flops,
    statement::NUM_PUBLIC_INPUTS,
};

/// Size of a compressed proof: G1 (32) + G2 (64) + G1 (32).
pub const PROOF_BYTES: usize = 128;

/// Groth16 proving key for the CU circuit.
#[derive(Debug, Clone, PartialEq)]
pub struct ProvingKey(ark_groth16::ProvingKey<Bn254>);

/// Groth16 verifying key for the CU circuit (kept with its pairing precomputation).
#[derive(Debug, Clone)]
pub struct VerifyingKey {
    vk: ark_groth16::VerifyingKey<Bn254>,
    prepared: PreparedVerifyingKey<Bn254>,
}

impl PartialEq for VerifyingKey {
    fn eq(&self, other: &Self) -> bool {
        self.vk == other.vk
    }
}

impl VerifyingKey {
    fn new(vk: ark_groth16::VerifyingKey<Bn254>) -> Self {
        let prepared = prepare_verifying_key(&vk);
        Self { vk, prepared }
    }
}

/// A Groth16 proof of a [`CuStatement`]; 128 bytes compressed.
#[derive(Debug, Clone, PartialEq)]
pub struct CuProof(ark_groth16::Proof<Bn254>);

impl CuProof {
    /// The compressed encoding (arkworks canonical, 128 bytes).
    pub fn to_bytes(&self) -> [u8; PROOF_BYTES] {
        let mut out = [0u8; PROOF_BYTES];
        self.0
            .serialize_compressed(&mut out[..])
            .expect("a BN254 Groth16 proof is exactly 128 bytes compressed");
        out
    }

    /// Strict decoding: exactly 128 bytes, points on the curve and in the subgroup.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CircuitError> {
        if bytes.len() != PROOF_BYTES {
            return Err(malformed(
                "proof",
                format!("{} bytes, expected {PROOF_BYTES}", bytes.len()),
            ));
        }
        decode("proof", bytes).map(Self)
    }
}

/// Deterministic key generation: the Groth16 toxic waste is drawn from ChaCha20
/// seeded with `seed`, so the same seed always yields the same keys. Whoever
/// knows the seed can forge proofs; see the trust note in DESIGN.md section 6.
pub fn setup(seed: [u8; 32]) -> (ProvingKey, VerifyingKey) {
    let mut rng = ChaCha20Rng::from_seed(seed);
    let (pk, vk) = Groth16::<Bn254>::circuit_specific_setup(CuCircuit::shape(), &mut rng)
        .expect("the CU circuit shape always synthesises");
    (ProvingKey(pk), VerifyingKey::new(vk))
}

/// Proves `stmt`. Refuses, before any proving work, a statement out of range
/// ([`CircuitError::OutOfRange`], [`CircuitError::InvalidRequest`]) or whose FLOPs
/// differ from [`flops`] ([`CircuitError::FlopsMismatch`]).
pub fn prove<R: RngCore + CryptoRng>(
    pk: &ProvingKey,
    stmt: &CuStatement,
    rng: &mut R,
) -> Result<CuProof, CircuitError> {
    stmt.validate()?;
    let expected = flops(&stmt.cfg, stmt.n_prompt, stmt.n_gen, stmt.start);
    if expected != Some(stmt.flops) {
        return Err(CircuitError::FlopsMismatch {
            claimed: stmt.flops,
            expected,
        });
    }
    let circuit = CuCircuit::for_statement(stmt)?;
    Groth16::<Bn254>::prove(&pk.0, circuit, rng)
        .map(CuProof)
        .map_err(synthesis)
}

/// Verifies `proof` for `stmt`: `Ok(())`, [`CircuitError::ProofRejected`] when the
/// pairing check fails, or a range error when `stmt` cannot be encoded.
pub fn verify(vk: &VerifyingKey, stmt: &CuStatement, proof: &CuProof) -> Result<(), CircuitError> {
    let x = stmt.public_inputs()?;
    match Groth16::<Bn254>::verify_proof(&vk.prepared, &proof.0, &x) {
        Ok(true) => Ok(()),
        Ok(false) => Err(CircuitError::ProofRejected),
        Err(e) => Err(synthesis(e)),
    }
}

/// Compressed encoding of a verifying key.
pub fn vk_to_bytes(vk: &VerifyingKey) -> Vec<u8> {
    encode(&vk.vk)
}

/// Strict decoding of a verifying key; it must have this circuit's input count.
pub fn vk_from_bytes(bytes: &[u8]) -> Result<VerifyingKey, CircuitError> {
    let vk: ark_groth16::VerifyingKey<Bn254> = decode("verifying key", bytes)?;
    check_vk_shape("verifying key", &vk)?;
    Ok(VerifyingKey::new(vk))
}

/// Compressed encoding of a proving key.
pub fn pk_to_bytes(pk: &ProvingKey) -> Vec<u8> {
    encode(&pk.0)
}

/// Strict decoding of a proving key; its query vectors must fit this circuit.
pub fn pk_from_bytes(bytes: &[u8]) -> Result<ProvingKey, CircuitError> {
    const WHAT: &str = "proving key";
    let pk: ark_groth16::ProvingKey<Bn254> = decode(WHAT, bytes)?;
    check_vk_shape(WHAT, &pk.vk)?;
    let (instance, witness) = variable_counts();
    let vars = instance + witness;
    let lens = [
        pk.a_query.len(),
        pk.b_g1_query.len(),
        pk.b_g2_query.len(),
        pk.l_query.len(),
    ];
    if lens != [vars, vars, vars, witness] || pk.h_query.is_empty() {
        return Err(malformed(
            WHAT,
            format!("query lengths {lens:?} do not fit the CU circuit"),
        ));
    }
    Ok(ProvingKey(pk))
}

/// The verifying key of a proving key.
pub fn vk_of(pk: &ProvingKey) -> VerifyingKey {
    VerifyingKey::new(pk.0.vk.clone())
}

/// A verifying key with its pairing precomputation (the `e(alpha, beta)`
/// pairing and the prepared `gamma` and `delta`), uncompressed: what
/// [`canonical_vk`](crate::canonical_vk) embeds, so that a verifier's
/// start does not redo that work (about 3.5 ms on the Zen 3 VM, more than
/// a proof's verification).
pub fn vk_to_prepared_bytes(vk: &VerifyingKey) -> Vec<u8> {
    let mut out = Vec::with_capacity(vk.prepared.uncompressed_size());
    vk.prepared
        .serialize_uncompressed(&mut out)
        .expect("serialising into a Vec cannot fail");
    out
}

/// Decodes [`vk_to_prepared_bytes`] without checking that the points are
/// on the curve, in their subgroups, or that the precomputation belongs to
/// the key: only for bytes the build trusts (the embedded canonical key,
/// which a test ties to the compressed `cu.vk` and its pinned hash). Keys
/// from elsewhere go through [`vk_from_bytes`].
pub(crate) fn vk_from_trusted_prepared(bytes: &[u8]) -> Result<VerifyingKey, CircuitError> {
    const WHAT: &str = "prepared verifying key";
    let prepared = decode_whole(WHAT, bytes, |r| {
        PreparedVerifyingKey::<Bn254>::deserialize_uncompressed_unchecked(r)
    })?;
    check_vk_shape(WHAT, &prepared.vk)?;
    Ok(VerifyingKey {
        vk: prepared.vk.clone(),
        prepared,
    })
}

/// Whether `vk`'s pairing precomputation is the one its key gives.
#[cfg(test)]
pub(crate) fn prepared_matches(vk: &VerifyingKey) -> bool {
    prepare_verifying_key(&vk.vk) == vk.prepared
}

/// blake3 of the compressed verifying key bytes: the value to pin.
pub fn vk_hash(vk: &VerifyingKey) -> [u8; 32] {
    blake3::hash(&vk_to_bytes(vk)).into()
}

/// (instance variables including the constant one, witness variables).
fn variable_counts() -> (usize, usize) {
    let cs = ConstraintSystem::new_ref();
    cs.set_mode(SynthesisMode::Setup);
    match CuCircuit::shape().generate_constraints(cs.clone()) {
        Ok(()) => (cs.num_instance_variables(), cs.num_witness_variables()),
        Err(_) => (0, 0),
    }
}

fn check_vk_shape(
    what: &'static str,
    vk: &ark_groth16::VerifyingKey<Bn254>,
) -> Result<(), CircuitError> {
    let n = vk.gamma_abc_g1.len();
    if n != NUM_PUBLIC_INPUTS + 1 {
        return Err(malformed(
            what,
            format!(
                "{n} input bases, expected {} (not a CU key)",
                NUM_PUBLIC_INPUTS + 1
            ),
        ));
    }
    Ok(())
}

fn encode<T: CanonicalSerialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.compressed_size());
    value
        .serialize_compressed(&mut out)
        .expect("serialising into a Vec cannot fail");
    out
}

/// Validated compressed decoding that also rejects trailing bytes.
fn decode<T: CanonicalDeserialize>(what: &'static str, bytes: &[u8]) -> Result<T, CircuitError> {
    decode_whole(what, bytes, |r| T::deserialize_compressed(r))
}

/// `read` over `bytes`, which must consume them all.
fn decode_whole<T>(
    what: &'static str,
    bytes: &[u8],
    read: impl FnOnce(&mut &[u8]) -> Result<T, SerializationError>,
) -> Result<T, CircuitError> {
    let mut reader = bytes;
    let value = read(&mut reader).map_err(|e| malformed(what, e.to_string()))?;
    if !reader.is_empty() {
        return Err(malformed(what, format!("{} trailing bytes", reader.len())));
    }
    Ok(value)
}

fn malformed(what: &'static str, reason: String) -> CircuitError {
    CircuitError::Malformed { what, reason }
}
