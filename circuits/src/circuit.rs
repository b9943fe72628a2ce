//! The R1CS for the CU statement.
//!
//! Public inputs `x` are in the order of [`CuStatement::public_inputs`]. With
//! `T = n_prompt + n_gen - 1` the constraints are (every product is a witness):
//!
//! ```text
//!  1  (n_prompt + n_gen - 1) * 1            = T
//!  2  H * dh                                = hd
//!  3  Hkv * dh                              = kvd
//!  4  d * (4*hd + 4*kvd + 6*F)              = P      (= 2dH dh + 2*2d Hkv dh + 2H dh d + 3*2dF)
//!  5  (T - start) * L                       = fl
//!  6  fl * P                                = proj
//!  7  T * (T + 1)                           = tt
//!  8  start * (start + 1)                   = ss
//!  9  L * hd                                = lhd
//! 10  lhd * (tt - ss)                       = attn
//! 11  d * V                                 = dv
//! 12  n_gen * dv                            = head
//! 13  (proj + 2*attn + 2*head) * 1          = FLOPs
//! 14-17  r * r = r_sq for each of the four root/header elements
//! ```
//!
//! Constraints 14-17 only bind the activation root and header hash into the
//! proof (ark-groth16's libsnark reduction already gives every public input its
//! own independent term, so a proof for one root never verifies for another; the
//! squares make that binding visible in the constraint system itself).
//!
//! # Soundness: field equation = integer equation
//!
//! Each witness is fixed by exactly one constraint as a product of earlier values,
//! so a satisfying assignment is unique and its values are the field images of the
//! integer computation. The verifier supplies every public input itself from
//! integers: the ten integer fields are `< 2^32` (enforced by
//! [`CuStatement::public_inputs`]) and FLOPs is a `u128`; also `n_gen >= 1` and
//! `start <= T`, so `T - start` and `tt - ss` are non-negative integers. Bounding
//! every term with `x < 2^32`, `T < 2^33`:
//!
//! ```text
//! P    = d*(4*H*dh + 4*Hkv*dh + 6*F)      < 2^32 * (2^66 + 2^66 + 2^35)  < 2^100
//! proj = (T - start)*L*P                  < 2^33 * 2^32 * 2^100          = 2^165
//! attn = L*H*dh*(T*(T+1) - s*(s+1))       < 2^96 * 2^67                  = 2^163
//! head = n_gen*d*V                        < 2^96
//! proj + 2*attn + 2*head                  < 2^166,   FLOPs < 2^128
//! ```
//!
//! Both sides of constraint 13 are integers in `[0, 2^166)`, far below the BN254
//! scalar modulus (~2^253.6), and so is every intermediate product; no value wraps,
//! hence the field equality holds iff the integer equality holds, i.e. iff FLOPs
//! equals [`crate::flops`].

use ark_bn254::Fr;
use ark_relations::gr1cs::{
    ConstraintSynthesizer, ConstraintSystem, ConstraintSystemRef, LinearCombination,
    OptimizationGoal, R1CS_PREDICATE_LABEL, SynthesisError, SynthesisMode, Variable, lc,
};

use crate::{CircuitError, CuStatement, statement::NUM_PUBLIC_INPUTS};

/// The values of all witness variables, in allocation order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Witness {
    t: Fr,
    hd: Fr,
    kvd: Fr,
    p: Fr,
    fl: Fr,
    proj: Fr,
    tt: Fr,
    ss: Fr,
    lhd: Fr,
    attn: Fr,
    dv: Fr,
    head: Fr,
    squares: [Fr; 4],
}

impl Witness {
    /// The unique witness for public inputs `x`.
    pub(crate) fn compute(x: &[Fr; NUM_PUBLIC_INPUTS]) -> Self {
        let [l, d, h, hkv, dh, f, v, np, ng, s, _flops, r0, r1, h0, h1] = *x;
        let one = Fr::from(1u64);
        let t = np + ng - one;
        let hd = h * dh;
        let kvd = hkv * dh;
        let p = d * (Fr::from(4u64) * hd + Fr::from(4u64) * kvd + Fr::from(6u64) * f);
        let fl = (t - s) * l;
        let tt = t * (t + one);
        let ss = s * (s + one);
        let lhd = l * hd;
        let dv = d * v;
        Self {
            t,
            hd,
            kvd,
            p,
            fl,
            proj: fl * p,
            tt,
            ss,
            lhd,
            attn: lhd * (tt - ss),
            dv,
            head: ng * dv,
            squares: [r0 * r0, r1 * r1, h0 * h0, h1 * h1],
        }
    }

    /// Every witness value, for tests that tamper with one at a time.
    #[cfg(test)]
    pub(crate) fn values_mut(&mut self) -> Vec<&mut Fr> {
        let [a, b, c, d] = &mut self.squares;
        vec![
            &mut self.t,
            &mut self.hd,
            &mut self.kvd,
            &mut self.p,
            &mut self.fl,
            &mut self.proj,
            &mut self.tt,
            &mut self.ss,
            &mut self.lhd,
            &mut self.attn,
            &mut self.dv,
            &mut self.head,
            a,
            b,
            c,
            d,
        ]
    }
}

/// The CU circuit; without an assignment it is the shape used for key generation.
#[derive(Debug, Clone, Default)]
pub(crate) struct CuCircuit {
    assignment: Option<([Fr; NUM_PUBLIC_INPUTS], Witness)>,
}

impl CuCircuit {
    /// The circuit with no values (for setup).
    pub(crate) fn shape() -> Self {
        Self::default()
    }

    /// The circuit with the honest witness for a statement (range-checked, FLOPs unchecked).
    pub(crate) fn for_statement(stmt: &CuStatement) -> Result<Self, CircuitError> {
        let x: [Fr; NUM_PUBLIC_INPUTS] = stmt
            .public_inputs()?
            .try_into()
            .map_err(|_| CircuitError::ProofSystem("public input count".into()))?;
        Ok(Self::with_witness(x, Witness::compute(&x)))
    }

    /// The circuit with explicit values (any values; used by tests to tamper).
    pub(crate) fn with_witness(x: [Fr; NUM_PUBLIC_INPUTS], w: Witness) -> Self {
        Self {
            assignment: Some((x, w)),
        }
    }

    /// Builds the constraint system with this assignment, in proving mode.
    pub(crate) fn synthesize(self) -> Result<ConstraintSystemRef<Fr>, CircuitError> {
        let cs = ConstraintSystem::new_ref();
        self.generate_constraints(cs.clone()).map_err(synthesis)?;
        cs.finalize();
        Ok(cs)
    }
}

/// Maps an arkworks synthesis error into ours.
pub(crate) fn synthesis(e: SynthesisError) -> CircuitError {
    CircuitError::ProofSystem(e.to_string())
}

impl ConstraintSynthesizer<Fr> for CuCircuit {
    fn generate_constraints(self, cs: ConstraintSystemRef<Fr>) -> Result<(), SynthesisError> {
        let (x, w) = match self.assignment {
            Some((x, w)) => (Some(x), Some(w)),
            None => (None, None),
        };
        let value = |v: Option<Fr>| move || v.ok_or(SynthesisError::AssignmentMissing);

        let mut inputs = [Variable::Zero; NUM_PUBLIC_INPUTS];
        for (i, var) in inputs.iter_mut().enumerate() {
            *var = cs.new_input_variable(value(x.map(|x| x[i])))?;
        }
        let [l, d, h, hkv, dh, f, v, np, ng, s, flops, r0, r1, h0, h1] = inputs;

        let wit = |get: fn(&Witness) -> Fr| cs.new_witness_variable(value(w.as_ref().map(get)));
        let t = wit(|w| w.t)?;
        let hd = wit(|w| w.hd)?;
        let kvd = wit(|w| w.kvd)?;
        let p = wit(|w| w.p)?;
        let fl = wit(|w| w.fl)?;
        let proj = wit(|w| w.proj)?;
        let tt = wit(|w| w.tt)?;
        let ss = wit(|w| w.ss)?;
        let lhd = wit(|w| w.lhd)?;
        let attn = wit(|w| w.attn)?;
        let dv = wit(|w| w.dv)?;
        let head = wit(|w| w.head)?;

        let one = Variable::One;
        let k = |c: u64| Fr::from(c);
        let var = |v: Variable| lc!() + v;
        let enforce =
            |a: LinearCombination<Fr>, b: LinearCombination<Fr>, c: LinearCombination<Fr>| {
                cs.enforce_r1cs_constraint(|| a, || b, || c)
            };

        enforce(lc!() + np + ng - one, var(one), var(t))?;
        enforce(var(h), var(dh), var(hd))?;
        enforce(var(hkv), var(dh), var(kvd))?;
        enforce(var(d), lc!() + (k(4), hd) + (k(4), kvd) + (k(6), f), var(p))?;
        enforce(lc!() + t - s, var(l), var(fl))?;
        enforce(var(fl), var(p), var(proj))?;
        enforce(var(t), lc!() + t + one, var(tt))?;
        enforce(var(s), lc!() + s + one, var(ss))?;
        enforce(var(l), var(hd), var(lhd))?;
        enforce(var(lhd), lc!() + tt - ss, var(attn))?;
        enforce(var(d), var(v), var(dv))?;
        enforce(var(ng), var(dv), var(head))?;
        enforce(
            lc!() + proj + (k(2), attn) + (k(2), head),
            var(one),
            var(flops),
        )?;

        let squares = [
            wit(|w| w.squares[0])?,
            wit(|w| w.squares[1])?,
            wit(|w| w.squares[2])?,
            wit(|w| w.squares[3])?,
        ];
        for (r, sq) in [r0, r1, h0, h1].into_iter().zip(squares) {
            enforce(var(r), var(r), var(sq))?;
        }
        Ok(())
    }
}

/// Number of R1CS constraints of the CU circuit (as synthesised for key generation).
pub fn num_constraints() -> usize {
    let cs = ConstraintSystem::new_ref();
    cs.set_optimization_goal(OptimizationGoal::Constraints);
    cs.set_mode(SynthesisMode::Setup);
    // Synthesising the empty shape cannot fail: no value is ever requested in setup mode.
    match CuCircuit::shape().generate_constraints(cs.clone()) {
        Ok(()) => {
            cs.finalize();
            cs.num_constraints()
        }
        Err(_) => 0,
    }
}

/// Whether the circuit is satisfied for `stmt` (range checks first).
///
/// Every witness is determined by the public inputs, so this is exactly "a
/// satisfying witness exists", and it agrees with `stmt.flops == flops(..)`.
pub fn constraints_satisfied(stmt: &CuStatement) -> Result<bool, CircuitError> {
    satisfied(&CuCircuit::for_statement(stmt)?.synthesize()?)
}

/// Checks `<A_i, z> * <B_i, z> = <C_i, z>` for every row of the R1CS matrices that
/// Groth16 proves, with `z = (1, public inputs, witness)`.
///
/// (`ConstraintSystemRef::is_satisfied` does the same but prints to stderr on
/// failure unless a tracing `ConstraintLayer` is installed.)
pub(crate) fn satisfied(cs: &ConstraintSystemRef<Fr>) -> Result<bool, CircuitError> {
    let matrices = cs.to_matrices().map_err(synthesis)?;
    if matrices.len() != 1 {
        return Err(CircuitError::ProofSystem("expected a pure R1CS".into()));
    }
    let [a, b, c] = matrices[R1CS_PREDICATE_LABEL].as_slice() else {
        return Err(CircuitError::ProofSystem(
            "expected three R1CS matrices".into(),
        ));
    };
    let z = [
        cs.instance_assignment().map_err(synthesis)?,
        cs.witness_assignment().map_err(synthesis)?,
    ]
    .concat();
    let eval = |row: &[(Fr, usize)]| row.iter().map(|&(coeff, i)| coeff * z[i]).sum::<Fr>();
    Ok(a.iter()
        .zip(b)
        .zip(c)
        .all(|((a, b), c)| eval(a) * eval(b) == eval(c)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FlopConfig, flops};

    fn honest() -> CuStatement {
        let cfg = FlopConfig {
            layers: 3,
            d_model: 16,
            heads: 4,
            kv_heads: 2,
            head_dim: 4,
            ffn: 40,
            vocab: 100,
        };
        let (n_prompt, n_gen, start) = (7, 5, 2);
        CuStatement {
            cfg,
            n_prompt,
            n_gen,
            start,
            flops: flops(&cfg, n_prompt, n_gen, start).unwrap(),
            activation_root: [0xab; 32],
            header_hash: [0xcd; 32],
        }
    }

    fn inputs(stmt: &CuStatement) -> [Fr; NUM_PUBLIC_INPUTS] {
        stmt.public_inputs().unwrap().try_into().unwrap()
    }

    #[test]
    fn honest_witness_satisfies() {
        let x = inputs(&honest());
        let cs = CuCircuit::with_witness(x, Witness::compute(&x))
            .synthesize()
            .unwrap();
        assert!(satisfied(&cs).unwrap());
        assert!(cs.is_satisfied().unwrap(), "arkworks' own check agrees");
        assert_eq!(cs.num_constraints(), 17);
        assert_eq!(cs.num_instance_variables(), NUM_PUBLIC_INPUTS + 1);
        assert_eq!(cs.num_witness_variables(), 16);
    }

    #[test]
    fn every_tampered_witness_value_is_caught() {
        let x = inputs(&honest());
        let n = Witness::compute(&x).values_mut().len();
        assert_eq!(n, 16);
        for i in 0..n {
            let mut w = Witness::compute(&x);
            *w.values_mut()[i] += Fr::from(1u64);
            let cs = CuCircuit::with_witness(x, w).synthesize().unwrap();
            assert!(
                !satisfied(&cs).unwrap(),
                "tampering witness {i} went unnoticed"
            );
        }
    }

    #[test]
    fn honest_witness_for_tampered_flops_is_unsatisfied() {
        let x = inputs(&honest());
        let w = Witness::compute(&x);
        let mut bad = x;
        bad[10] += Fr::from(1u64);
        let cs = CuCircuit::with_witness(bad, w).synthesize().unwrap();
        assert!(!satisfied(&cs).unwrap());
        // Recomputing the witness from the tampered inputs cannot help either:
        // the FLOPs constraint still fails.
        let cs = CuCircuit::with_witness(bad, Witness::compute(&bad))
            .synthesize()
            .unwrap();
        assert!(!satisfied(&cs).unwrap());
    }

    #[test]
    fn shape_matches_assigned_circuit() {
        assert_eq!(num_constraints(), 17);
    }
}
