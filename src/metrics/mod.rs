//! Scores, one kind per module: classification (confusion matrix, accuracy, F1), correlation
//! (Spearman and Pearson, for similarity), retrieval (MRR@k, recall@k). Plain Rust on slices,
//! each tested against hand-computed fixtures and against scikit-learn / scipy.

pub mod classification;
pub mod correlation;
pub mod retrieval;
