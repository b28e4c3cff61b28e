//! `tuneserve bench --matmul`: the fp32 matrix products the model runs, timed
//! through our sgemm (the widest kernel this CPU has) and through the `gemm` crate,
//! on the same shapes as `reference/hf_bench.py --matmul` times `torch.matmul`.
//!
//! The shapes are the recipe's: a short text is M = 1…64 rows against the
//! Conv1D weights (768 × 2304, 768 × 768, 768 × 3072, 3072 × 768), forward
//! (`x·W`) and backward (`dy·Wᵀ`, `xᵀ·dy`), plus the 2048³ square product;
//! and the forward products of int8 and bf16 inference (quantizing or
//! rounding the rows included) beside fp32's, on one text and on a batch of
//! 32 texts of 24 tokens.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;

use std::time::Instant;

use super::{median, BenchArgs};
use crate::model::ops::sgemm::{sgemm_with, Isa, MatRef, PARALLEL_MACS};

/// One product to time: `x·W`, `dy·Wᵀ` or `xᵀ·dy` for a `[k_in, n_out]` weight.
#[derive(Clone, Copy)]
enum Product {
    Forward,
    InputGrad,
    WeightGrad,
}

/// `(label, m, n, k, A transposed, B transposed)` of each timed product.
fn shapes() -> Vec<(String, usize, usize, usize, bool, bool)> {
    let mut out = Vec::new();
    let weights = [(768, 2304), (768, 768), (768, 3072), (3072, 768)];
    for rows in [1, 4, 16, 32, 64] {
        for (k_in, n_out) in weights {
            for p in [Product::Forward, Product::InputGrad, Product::WeightGrad] {
                if rows != 16 && !matches!(p, Product::Forward) {
                    continue;
                }
                out.push(match p {
                    Product::Forward => (
                        format!("x.W {rows}x{k_in}x{n_out}"),
                        rows,
                        n_out,
                        k_in,
                        false,
                        false,
                    ),
                    Product::InputGrad => (
                        format!("dy.Wt {rows}x{n_out}x{k_in}"),
                        rows,
                        k_in,
                        n_out,
                        false,
                        true,
                    ),
                    Product::WeightGrad => (
                        format!("xt.dy {k_in}x{rows}x{n_out}"),
                        k_in,
                        n_out,
                        rows,
                        true,
                        false,
                    ),
                });
            }
        }
    }
    out.push((
        "square 2048x2048x2048".into(),
        2048,
        2048,
        2048,
        false,
        false,
    ));
    out
}

/// `C = A·B` through the `gemm` crate, as `linear.rs` called it before sgemm.
fn gemm_crate(m: usize, n: usize, k: usize, a: &MatRef, b: &MatRef, c: &mut [f32]) {
    let threads = rayon::current_num_threads();
    let parallelism = if threads > 1 && m * n * k >= PARALLEL_MACS {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    assert!(c.len() == m * n && a.data.len() >= m * k && b.data.len() >= k * n);
    // SAFETY: the views are dense `m×k` and `k×n` matrices (checked above) read
    // through their strides; `c` is a unique `m×n` row-major buffer.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// Times every shape; prints a table and returns it as JSON.
pub fn run(args: &BenchArgs) -> anyhow::Result<serde_json::Value> {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let isas = [Isa::best()];
    let threads = rayon::current_num_threads();
    println!("matmul shapes, GFLOP/s (best of {} interleaved rounds), {threads} threads; sgemm picks {:?}", args.iters, Isa::best());
    let mut rows = Vec::new();
    for (label, m, n, k, a_t, b_t) in shapes() {
        let a_data: Vec<f32> = (0..m * k).map(|_| rng.random_range(-1.0..1.0)).collect();
        let b_data: Vec<f32> = (0..k * n).map(|_| rng.random_range(-1.0..1.0)).collect();
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
        let mut c = vec![0f32; m * n];
        let flops = 2.0 * (m * n * k) as f64;
        let tasks = if m * n * k >= PARALLEL_MACS {
            threads
        } else {
            1
        };
        // Every round times each contender once, back to back, so that a burst
        // of load from elsewhere hits them alike: GFLOP/s from each one's best
        // round, and the median over rounds of the sgemm / gemm crate ratio.
        let mut best = vec![f64::INFINITY; isas.len() + 1];
        let mut ratios = Vec::new();
        for round in 0..args.warmup + args.iters.max(1) {
            let mut secs = Vec::with_capacity(isas.len() + 1);
            for isa in &isas {
                let t = Instant::now();
                sgemm_with(*isa, tasks, (m, n, k), a, b, &mut c, n, false);
                secs.push(t.elapsed().as_secs_f64());
            }
            let t = Instant::now();
            gemm_crate(m, n, k, &a, &b, &mut c);
            secs.push(t.elapsed().as_secs_f64());
            if round >= args.warmup {
                best.iter_mut().zip(&secs).for_each(|(b, s)| *b = b.min(*s));
                ratios.push(secs[isas.len()] / secs[0]);
            }
        }
        let gflops: Vec<f64> = best.iter().map(|t| flops / t / 1e9).collect();
        let ours: serde_json::Map<String, serde_json::Value> = isas
            .iter()
            .zip(&gflops)
            .map(|(i, g)| (format!("{i:?}").to_lowercase(), json!(g)))
            .collect();
        let (best, gemm, ratio) = (gflops[0], gflops[isas.len()], median(&mut ratios));
        println!(
            "  {label:<26} sgemm {best:>7.1}  gemm crate {gemm:>7.1}  (median ratio {ratio:.2}x)"
        );
        rows.push(
            json!({"label": label, "m": m, "n": n, "k": k, "a_transposed": a_t,
            "b_transposed": b_t, "sgemm_gflops": ours, "sgemm_best_gflops": best,
            "gemm_crate_gflops": gemm, "median_ratio": ratio}),
        );
    }
    let narrow = narrow_products(args, threads);
    Ok(
        json!({"threads": threads, "isa": format!("{:?}", Isa::best()), "shapes": rows,
              "inference": narrow}),
    )
}

/// `x·W + b` in fp32 (sgemm), int8 and bf16 (their kernels as dispatched
/// now), best of the rounds, interleaved; GOP/s counts `2·m·n·k`.
fn narrow_products(args: &BenchArgs, threads: usize) -> serde_json::Value {
    use crate::model::ops::qgemm::{Bf16Isa, QIsa};
    use crate::model::ops::{Bf16Weight, Int8Weight};
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    println!(
        "inference products x.W + b, GOP/s; int8 on {:?}, bf16 on {:?}",
        QIsa::current(),
        Bf16Isa::current()
    );
    let mut out = Vec::new();
    for rows in [24, 768] {
        for (k, n) in [(768, 2304), (768, 768), (768, 3072), (3072, 768)] {
            let x: Vec<f32> = (0..rows * k).map(|_| rng.random_range(-1.0..1.0)).collect();
            let w: Vec<f32> = (0..k * n).map(|_| rng.random_range(-0.1..0.1)).collect();
            let bias = vec![0f32; n];
            let (i8w, bfw) = (
                Int8Weight::new(&w, &bias, (k, n)),
                Bf16Weight::new(&w, &bias, (k, n)),
            );
            let tasks = if rows * n * k >= PARALLEL_MACS {
                threads
            } else {
                1
            };
            let mut c = vec![0f32; rows * n];
            let mut best = [f64::INFINITY; 3];
            for _ in 0..args.warmup + args.iters.max(1) {
                let t = Instant::now();
                let (a, b) = (MatRef::rows(&x, k), MatRef::rows(&w, n));
                sgemm_with(Isa::best(), tasks, (rows, n, k), a, b, &mut c, n, false);
                best[0] = best[0].min(t.elapsed().as_secs_f64());
                let t = Instant::now();
                std::hint::black_box(i8w.forward(QIsa::current(), &x));
                best[1] = best[1].min(t.elapsed().as_secs_f64());
                let t = Instant::now();
                std::hint::black_box(bfw.forward(Bf16Isa::current(), &x));
                best[2] = best[2].min(t.elapsed().as_secs_f64());
            }
            let ops = 2.0 * (rows * n * k) as f64 / 1e9;
            let [f, i, b] = best.map(|t| ops / t);
            let label = format!("{rows}x{k}x{n}");
            println!(
                "  {label:<16} fp32 {f:>7.1}  int8 {i:>7.1} ({:.2}x)  bf16 {b:>7.1} ({:.2}x)",
                i / f,
                b / f
            );
            out.push(json!({"label": label, "fp32_gops": f, "int8_gops": i, "bf16_gops": b}));
        }
    }
    json!(out)
}
