//! [`VectorSet`]: a labelled matrix of per-protein vectors, the hand-off
//! between the embedding cache and the classifiers.

use crate::io::Family;

/// `ids.len()` rows of `dim` f32 values, row-major, with optional family labels.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct VectorSet {
    pub ids: Vec<String>,
    pub families: Vec<Option<Family>>,
    pub dim: usize,
    pub data: Vec<f32>,
}

impl VectorSet {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    pub fn push(&mut self, id: String, family: Option<Family>, vector: &[f32]) {
        if self.ids.is_empty() && self.dim == 0 {
            self.dim = vector.len();
        }
        assert_eq!(vector.len(), self.dim, "vector length must equal the set's dimension");
        self.ids.push(id);
        self.families.push(family);
        self.data.extend_from_slice(vector);
    }

    /// The rows at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> VectorSet {
        let mut out = VectorSet {
            dim: self.dim,
            ..Default::default()
        };
        for &i in indices {
            out.ids.push(self.ids[i].clone());
            out.families.push(self.families[i].clone());
            out.data.extend_from_slice(self.row(i));
        }
        out
    }
}
