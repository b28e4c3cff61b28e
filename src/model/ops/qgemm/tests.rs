//! Every int8 kernel this CPU can run against a scalar `i32` product: the
//! integers must be equal, on odd sizes, a depth not a multiple of four, the
//! edges of tiles, panels and row blocks, the extreme values (±127 weights,
//! −128..127 activations) and several task counts; and the de-quantizing
//! output against the same sums scaled in `f64`.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;

fn random_i8(len: usize, lo: i8, rng: &mut ChaCha8Rng) -> Vec<i8> {
    (0..len).map(|_| rng.random_range(lo..=127)).collect()
}

fn reference(a: &[i8], w: &[i8], (m, n, k): (usize, usize, usize)) -> Vec<i32> {
    let mut c = vec![0i32; m * n];
    for i in 0..m {
        for j in 0..n {
            c[i * n + j] = (0..k)
                .map(|p| i32::from(a[i * k + p]) * i32::from(w[p * n + j]))
                .sum();
        }
    }
    c
}

const SHAPES: &[(usize, usize, usize)] = &[
    (1, 1, 1),
    (1, 64, 4),
    (2, 65, 7),
    (3, 17, 5),
    (6, 64, 768),
    (7, 130, 33),
    (13, 48, 64),
    (20, 200, 129),
    (64, 2304, 96),
    (70, 100, 3),
    (97, 257, 1030),
];

fn check_all(isa: QIsa) {
    if !isa.available() {
        eprintln!("qgemm: {isa:?} kernel NOT tested: this CPU does not support it");
        return;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for &(m, n, k) in SHAPES {
        let a = random_i8(m * k, i8::MIN, &mut rng);
        let w = random_i8(k * n, -127, &mut rng);
        let want = reference(&a, &w, (m, n, k));
        let packed = PackedI8::new(&w, k, n);
        for threads in [1, 2, 3] {
            let mut c = vec![i32::MIN; m * n];
            qgemm_i32(isa, threads, &a, m, &packed, &mut c);
            assert_eq!(c, want, "{isa:?} {m}x{n}x{k} threads={threads}");
        }
        check_dequantized(isa, &a, &packed, &want, &mut rng);
    }
    extremes(isa);
}

/// The `f32` output is the exact sum times both scales plus the bias.
fn check_dequantized(isa: QIsa, a: &[i8], w: &PackedI8, sums: &[i32], rng: &mut ChaCha8Rng) {
    let (k, n) = w.shape();
    let m = sums.len() / n;
    let padded = n.next_multiple_of(PANEL);
    let rows: Vec<f32> = (0..m).map(|_| rng.random_range(0.001f32..0.1)).collect();
    let cols: Vec<f32> = (0..padded)
        .map(|_| rng.random_range(0.001f32..0.1))
        .collect();
    let bias: Vec<f32> = (0..padded).map(|_| rng.random_range(-1f32..1.0)).collect();
    let prepared = PreparedA::from_i8(a, (m, k), isa.offset());
    let mut c = vec![f32::NAN; m * n];
    qgemm_f32(isa, 2, &prepared, w, (&rows, &cols, &bias), &mut c);
    for i in 0..m {
        for j in 0..n {
            let want =
                f64::from(sums[i * n + j]) * f64::from(rows[i] * cols[j]) + f64::from(bias[j]);
            let got = f64::from(c[i * n + j]);
            assert!(
                (got - want).abs() <= 1e-5 * want.abs().max(1.0),
                "{isa:?} f32 at ({i},{j}): {got} vs {want}"
            );
        }
    }
}

/// The largest products every kernel must sum without saturating.
fn extremes(isa: QIsa) {
    let (m, n, k) = (5, 70, 3072);
    for (av, wv) in [(127i8, 127i8), (-128, 127), (-128, -127), (127, -127)] {
        let a = vec![av; m * k];
        let w = vec![wv; k * n];
        let mut c = vec![0i32; m * n];
        qgemm_i32(isa, 2, &a, m, &PackedI8::new(&w, k, n), &mut c);
        let want = i32::from(av) * i32::from(wv) * k as i32;
        assert!(
            c.iter().all(|&v| v == want),
            "{isa:?} {av}x{wv}: {} vs {want}",
            c[0]
        );
    }
}

#[test]
fn avx512vnni_kernel_is_exact_when_the_cpu_has_it() {
    check_all(QIsa::Avx512Vnni);
}

#[test]
fn avxvnni_kernel_is_exact_when_the_cpu_has_it() {
    check_all(QIsa::AvxVnni);
}

#[test]
fn avx2_kernel_is_exact_when_the_cpu_has_it() {
    check_all(QIsa::Avx2);
}

#[test]
fn portable_kernel_is_exact() {
    check_all(QIsa::Portable);
}

#[test]
fn forced_kernel_is_used_and_restored() {
    let before = QIsa::current();
    with_qgemm_isa(QIsa::Portable, || {
        assert_eq!(QIsa::current(), QIsa::Portable)
    });
    assert_eq!(QIsa::current(), before);
}

#[test]
#[should_panic(expected = "-127..=127")]
fn weights_of_minus_128_are_refused() {
    PackedI8::new(&[i8::MIN], 1, 1);
}
