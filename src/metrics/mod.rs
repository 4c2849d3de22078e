//! Scores, one kind per module: classification (confusion matrix, accuracy, F1), correlation
//! (Spearman and Pearson, for similarity), retrieval (MRR@k, recall@k). Plain Rust on slices,
//! each tested against hand-computed fixtures and against scikit-learn / scipy.

pub mod classification;
pub mod correlation;
pub mod retrieval;

/// Reads a metric JSON wrote as `null` back as NaN: serde_json writes a NaN (a correlation of
/// constant scores) as `null`, and a run's own state and log must read back what they wrote.
pub fn null_as_nan<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    Ok(<Option<f64> as serde::Deserialize>::deserialize(deserializer)?.unwrap_or(f64::NAN))
}

#[cfg(test)]
mod tests {
    #[derive(serde::Serialize, serde::Deserialize)]
    struct Score {
        #[serde(deserialize_with = "super::null_as_nan")]
        value: f64,
    }

    #[test]
    fn a_nan_metric_reads_back_as_nan() {
        let written = serde_json::to_string(&Score { value: f64::NAN }).unwrap();
        assert_eq!(written, r#"{"value":null}"#);
        assert!(serde_json::from_str::<Score>(&written).unwrap().value.is_nan());
        assert_eq!(serde_json::from_str::<Score>(r#"{"value":0.5}"#).unwrap().value, 0.5);
    }
}
