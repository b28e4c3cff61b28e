//! The weight gradients of the fused linear layers, summed in place over an
//! optimizer step's micro-batches.
//!
//! Left to candle's autograd, every micro-batch's backward pass allocates a new
//! `dW` for each layer (a zeroed buffer, the product, then their sum), and the
//! step adds those up again: for the recipe's batches of one short text, zeroing,
//! adding and paging in 340 MB of buffers per micro-batch cost more than the
//! products. Here a layer's backward pass only records its input `X` and output
//! gradient `dY` (a few rows each); the sink then multiplies all the rows a layer
//! recorded in one product, `dW (+)= Xᵀ·dY` and `db (+)= Σ dY`, into a buffer
//! that lives as long as the model. Each `dW` is written once per step and
//! nothing is allocated after the first step.
//!
//! At most [`MAX_PENDING_ROWS`] rows wait per layer (more are multiplied at
//! once), which bounds what large batches keep alive. A gradient read from the
//! sink is a view of its buffer: valid until the next [`GradSink::begin_step`].

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use candle_core::{CpuStorage, DType, Device, InplaceOp3, Layout, Result, Tensor, TensorId};

use super::f32_slice;
use super::products::weight_gradients;

/// Rows recorded for one layer before they are multiplied into its gradient: a
/// product over this many rows is compute-bound, so waiting longer gains little.
const MAX_PENDING_ROWS: usize = 256;

/// Where the linear layers of a training model send their weight gradients (see
/// the module docs). Shared by the layers' backward ops and the step that reads
/// the gradients.
#[derive(Default)]
pub struct GradSink {
    layers: Mutex<Layers>,
}

impl std::fmt::Debug for GradSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GradSink")
            .field("layers", &self.lock().by_weight.len())
            .finish()
    }
}

#[derive(Default)]
struct Layers {
    by_weight: HashMap<TensorId, Layer>,
    /// A bias's id → its layer's weight id.
    weight_of_bias: HashMap<TensorId, TensorId>,
}

/// One layer's gradient buffer and the rows waiting to be multiplied into it.
struct Layer {
    /// `[dW | db]` flattened: `n_in·n_out` values, then `n_out`.
    packed: Tensor,
    n_in: usize,
    n_out: usize,
    /// `(X [rows, n_in], dY [rows, n_out])` per recorded backward pass.
    pending: Vec<(Tensor, Tensor)>,
    /// Whether `packed` holds this step's sum; otherwise the next product
    /// overwrites it (so it is never zeroed).
    written: bool,
}

impl Layer {
    fn flush(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let (xs, dys): (Vec<Tensor>, Vec<Tensor>) = self.pending.drain(..).unzip();
        let (x, dy) = (Tensor::cat(&xs, 0)?, Tensor::cat(&dys, 0)?);
        let op = AccumulateGrads {
            n_in: self.n_in,
            n_out: self.n_out,
            accumulate: self.written,
        };
        self.packed.inplace_op3(&x, &dy, &op)?;
        self.written = true;
        Ok(())
    }
}

impl GradSink {
    fn lock(&self) -> MutexGuard<'_, Layers> {
        self.layers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts an optimizer step: what the sink holds is stale from here on, and
    /// rows left over from a step that failed half-way are dropped.
    pub fn begin_step(&self) {
        for layer in self.lock().by_weight.values_mut() {
            layer.pending.clear();
            layer.written = false;
        }
    }

    /// Records one backward pass of the layer with weight `w` `[n_in, n_out]`
    /// and bias `b`: its input `x` `[rows, n_in]` and output gradient `dy`
    /// `[rows, n_out]` (both contiguous f32 on the host, detached).
    pub(super) fn record(&self, (w, b): (&Tensor, &Tensor), x: Tensor, dy: Tensor) -> Result<()> {
        let (_, n_in) = x.dims2()?;
        let n_out = dy.dim(1)?;
        let mut layers = self.lock();
        let layers = &mut *layers;
        let layer = match layers.by_weight.entry(w.id()) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => {
                layers.weight_of_bias.insert(b.id(), w.id());
                e.insert(Layer {
                    packed: Tensor::zeros(n_in * n_out + n_out, DType::F32, &Device::Cpu)?,
                    n_in,
                    n_out,
                    pending: Vec::new(),
                    written: false,
                })
            }
        };
        if (layer.n_in, layer.n_out) != (n_in, n_out) {
            candle_core::bail!(
                "gradient sink: a [{n_in}, {n_out}] pass for a [{}, {}] layer",
                layer.n_in,
                layer.n_out
            );
        }
        layer.pending.push((x, dy));
        let waiting: usize = layer.pending.iter().map(|(x, _)| x.dims()[0]).sum();
        if waiting >= MAX_PENDING_ROWS {
            layer.flush()?;
        }
        Ok(())
    }

    /// This step's gradient of `param` (a layer's weight or bias), or `None`
    /// when no recorded backward pass reached it this step.
    pub fn gradient(&self, param: &Tensor) -> Result<Option<Tensor>> {
        let mut layers = self.lock();
        let layers = &mut *layers;
        let (weight, is_bias) = match layers.weight_of_bias.get(&param.id()) {
            Some(w) => (*w, true),
            None => (param.id(), false),
        };
        let Some(layer) = layers.by_weight.get_mut(&weight) else {
            return Ok(None);
        };
        layer.flush()?;
        if !layer.written {
            return Ok(None);
        }
        let dw_len = layer.n_in * layer.n_out;
        Ok(Some(if is_bias {
            layer.packed.narrow(0, dw_len, layer.n_out)?
        } else {
            layer
                .packed
                .narrow(0, 0, dw_len)?
                .reshape((layer.n_in, layer.n_out))?
        }))
    }
}

/// `[dW | db] (+)= [Xᵀ·dY | Σ dY]` in place.
struct AccumulateGrads {
    n_in: usize,
    n_out: usize,
    /// Add onto the buffer rather than overwrite it.
    accumulate: bool,
}

impl InplaceOp3 for AccumulateGrads {
    fn name(&self) -> &'static str {
        "accumulate-grads"
    }

    fn cpu_fwd(
        &self,
        dst: &mut CpuStorage,
        dst_l: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<()> {
        let (n_in, n_out) = (self.n_in, self.n_out);
        let x = f32_slice(s2, l2, self.name())?;
        let dy = f32_slice(s3, l3, self.name())?;
        let (Some((a, b)), CpuStorage::F32(dst)) = (dst_l.contiguous_offsets(), dst) else {
            candle_core::bail!("accumulate-grads: the buffer must be contiguous f32");
        };
        let grads = dst[a..b].split_at_mut(n_in * n_out);
        weight_gradients(grads, x, dy, (n_in, n_out), self.accumulate);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use candle_core::{Device, Tensor, Var};

    use super::super::linear;
    use super::super::testing::close;
    use super::*;

    fn var(shape: &[usize]) -> Var {
        Var::from_tensor(&Tensor::randn(0f32, 1.0, shape, &Device::Cpu).unwrap()).unwrap()
    }

    /// Backward passes over batches of `rows` each through one layer, with and
    /// without a sink; the sink's sums must equal autograd's.
    fn compare(rows: &[usize]) {
        let (w, b) = (var(&[40, 24]), var(&[24]));
        let sink = Arc::new(GradSink::default());
        sink.begin_step();
        let (mut dw, mut db) = (w.zeros_like().unwrap(), b.zeros_like().unwrap());
        for &r in rows {
            let x = var(&[r, 40]);
            let dy = Tensor::randn(0f32, 1.0, (r, 24), &Device::Cpu).unwrap();
            let loss = |y: Tensor| (y * &dy).unwrap().sum_all().unwrap();
            let through_sink = loss(linear(&x, &w, &b, Some(&sink)).unwrap());
            let g_sink = through_sink.backward().unwrap();
            assert!(g_sink.get(&w).is_none() && g_sink.get(&b).is_none());
            let g = loss(linear(&x, &w, &b, None).unwrap()).backward().unwrap();
            close(g_sink.get(&x).unwrap(), g.get(&x).unwrap(), 1e-4);
            dw = (dw + g.get(&w).unwrap()).unwrap();
            db = (db + g.get(&b).unwrap()).unwrap();
        }
        close(&sink.gradient(&w).unwrap().unwrap(), &dw, 1e-3);
        close(&sink.gradient(&b).unwrap().unwrap(), &db, 1e-3);
    }

    #[test]
    fn sums_match_autograd_whether_rows_wait_or_not() {
        compare(&[3]);
        compare(&[3, 5, 1, 7]);
        // Over MAX_PENDING_ROWS: multiplied in two products, added up.
        compare(&[200, 100, 9]);
    }

    #[test]
    fn a_new_step_starts_from_nothing() {
        let (w, b, x) = (var(&[8, 4]), var(&[4]), var(&[2, 8]));
        let sink = Arc::new(GradSink::default());
        let backward = || {
            linear(&x, &w, &b, Some(&sink))
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap()
        };
        backward();
        let first = sink
            .gradient(&w)
            .unwrap()
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        sink.begin_step();
        assert!(
            sink.gradient(&w).unwrap().is_none(),
            "stale after begin_step"
        );
        backward();
        let second = sink
            .gradient(&w)
            .unwrap()
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        assert_eq!(first, second, "the second step overwrote, not added");
        let unknown = var(&[4]);
        assert!(sink.gradient(&unknown).unwrap().is_none());
    }
}
