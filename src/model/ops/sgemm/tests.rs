//! sgemm against a naive f64 product: odd sizes, one row, the edges of every
//! block (tile, `mc`, `kc`, `nc`), transposed operands, accumulation, a row
//! stride wider than the product, and every kernel this CPU can run.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;

fn random(len: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
    (0..len).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

/// Checks one product on one kernel with every combination of operand layout,
/// accumulation and thread count.
fn check(isa: Isa, (m, n, k): (usize, usize, usize), rng: &mut ChaCha8Rng) {
    let (a_data, b_data) = (random(m * k, rng), random(k * n, rng));
    for (a_t, b_t, acc, threads) in [
        (false, false, false, 1),
        (false, false, true, 2),
        (true, false, false, 3),
        (false, true, true, 1),
        (true, true, false, 2),
    ] {
        let a = if a_t {
            MatRef::transposed(&a_data, m)
        } else {
            MatRef::rows(&a_data, k)
        };
        let b = if b_t {
            MatRef::transposed(&b_data, k)
        } else {
            MatRef::rows(&b_data, n)
        };
        let ldc = n + 3;
        let start = random(m * ldc, rng);
        let mut c = start.clone();
        sgemm_with(isa, threads, (m, n, k), a, b, &mut c, ldc, acc);
        for i in 0..m {
            for j in 0..ldc {
                let got = c[i * ldc + j];
                if j >= n {
                    assert_eq!(got, start[i * ldc + j], "{isa:?} wrote past column {n}");
                    continue;
                }
                let mut want: f64 = if acc {
                    f64::from(start[i * ldc + j])
                } else {
                    0.0
                };
                for p in 0..k {
                    let x = f64::from(a.data[i * a.rs + p * a.cs]);
                    want += x * f64::from(b.data[p * b.rs + j * b.cs]);
                }
                let tol = 1e-5 * (k as f64).sqrt().max(1.0) * 4.0;
                assert!(
                    (f64::from(got) - want).abs() <= tol,
                    "{isa:?} {m}x{n}x{k} a_t={a_t} b_t={b_t} acc={acc} threads={threads} \
                     at ({i},{j}): {got} vs {want}"
                );
            }
        }
    }
}

const SHAPES: &[(usize, usize, usize)] = &[
    (1, 1, 1),
    (1, 2304, 768),
    (3, 17, 5),
    (5, 15, 1),
    (6, 16, 256),
    (7, 33, 257),
    (8, 32, 255),
    (9, 31, 300),
    (13, 48, 64),
    (18, 100, 40),
    (64, 40, 70),
    (65, 65, 65),
    (95, 47, 513),
    (97, 129, 20),
    (129, 70, 30),
    (200, 10, 600),
    (2, 3100, 3),
    (70, 3075, 2),
];

fn check_all(isa: Isa) {
    if !isa.available() {
        eprintln!("sgemm: {isa:?} kernel NOT tested: this CPU does not support it");
        return;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for &shape in SHAPES {
        check(isa, shape, &mut rng);
    }
}

#[test]
fn avx512_kernel_matches_reference_when_the_cpu_has_it() {
    check_all(Isa::Avx512);
}

#[test]
fn avx2_kernel_matches_reference_when_the_cpu_has_it() {
    check_all(Isa::Avx2);
}

#[test]
fn portable_kernel_matches_reference() {
    check_all(Isa::Portable);
}

#[test]
fn empty_depth_zeroes_or_keeps_c() {
    let a: [f32; 0] = [];
    let mut c = vec![5f32; 6];
    let view = MatRef::rows(&a, 0);
    sgemm((2, 3, 0), view, MatRef::rows(&a, 3), &mut c, 3, true);
    assert_eq!(c, vec![5.0; 6]);
    sgemm((2, 3, 0), view, MatRef::rows(&a, 3), &mut c, 3, false);
    assert_eq!(c, vec![0.0; 6]);
}

#[test]
#[should_panic(expected = "operand too short")]
fn short_operand_panics() {
    let a = [0f32; 5];
    let mut c = [0f32; 4];
    sgemm(
        (2, 2, 3),
        MatRef::rows(&a, 3),
        MatRef::rows(&a, 2),
        &mut c,
        2,
        false,
    );
}

#[test]
fn best_kernel_is_available() {
    assert!(Isa::best().available());
}
