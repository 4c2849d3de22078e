//! A weight file's tensors matched against a model's by canonical name and shape, and copied
//! into a VarStore. Every match reports which model tensors the file did not provide, so
//! callers can check that exactly the new layers are missing: a file with the wrong prefix
//! would otherwise "load" nothing and still succeed.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use tch::nn::VarStore;
use tch::Tensor;

/// Maps a HF tensor name onto the store's naming for a backbone whose prefix is `prefix`
/// (`distilbert` or `bert`): bare `AutoModel` saves lack the prefix, and old BERT files
/// name LayerNorm parameters `gamma`/`beta`.
pub fn canonical_name(name: &str, prefix: &str) -> String {
    let name = name.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias");
    const BACKBONE_TOP_LEVEL: &[&str] = &["embeddings.", "encoder.", "transformer.", "pooler."];
    if BACKBONE_TOP_LEVEL.iter().any(|top| name.starts_with(top)) {
        format!("{prefix}.{name}")
    } else {
        name
    }
}

/// How a weight file's tensors fit a model's list of tensors.
#[derive(Debug, Default)]
pub struct MatchedTensors {
    /// File tensors under the model's names, with the model's shapes.
    pub found: BTreeMap<String, Tensor>,
    /// Model tensors the file lacks.
    pub missing: Vec<String>,
    /// File tensors the model has no use for, e.g. BERT's pooler.
    pub unused: Vec<(String, Tensor)>,
}

/// Matches a file's tensors against the model's `name → shape` list under their canonical
/// names. Shapes must agree exactly; all mismatches are reported together, naming `file`
/// (the weight file, as messages show it).
pub fn match_tensors(
    file: &str,
    tensors: BTreeMap<String, Tensor>,
    expected: &BTreeMap<String, Vec<i64>>,
    prefix: &str,
) -> Result<MatchedTensors> {
    let mut matched = MatchedTensors::default();
    let mut mismatches = Vec::new();
    for (name, tensor) in tensors {
        let canonical = canonical_name(&name, prefix);
        match expected.get(&canonical) {
            None => matched.unused.push((canonical, tensor)),
            Some(shape) if *shape != tensor.size() => {
                mismatches.push(format!("{canonical}: file {:?}, model {shape:?}", tensor.size()))
            }
            // Every weight the model computes with is floating point.
            Some(_) if !tensor.is_floating_point() => {
                mismatches.push(format!("{canonical}: file {:?} numbers, model floating point", tensor.kind()))
            }
            Some(_) => {
                matched.found.insert(canonical, tensor);
            }
        }
    }
    if !mismatches.is_empty() {
        // A configuration of the wrong size mismatches every tensor: the first few tell.
        const SHOWN: usize = 3;
        let more = match mismatches.len().saturating_sub(SHOWN) {
            0 => String::new(),
            n => format!("; and {n} more"),
        };
        let shown = mismatches[..mismatches.len().min(SHOWN)].join("; ");
        bail!("{file} does not fit the model's configuration; mismatches: {shown}{more}");
    }
    matched.missing = expected.keys().filter(|name| !matched.found.contains_key(*name)).cloned().collect();
    Ok(matched)
}

/// Copies the file's tensors into the store's variables of the same (canonical) name
/// (see [`match_tensors`]); dtypes are converted to the store's (an fp16 file loads into fp32
/// variables). Returns the store variables the file lacked and the file tensors left over.
pub fn load_into(vs: &VarStore, file: &str, tensors: BTreeMap<String, Tensor>, prefix: &str) -> Result<MatchedTensors> {
    let variables = vs.variables();
    let expected = variables.iter().map(|(name, t)| (name.clone(), t.size())).collect();
    let matched = match_tensors(file, tensors, &expected, prefix)?;
    for (name, source) in &matched.found {
        let mut target = variables[name].shallow_clone();
        tch::no_grad(|| target.f_copy_(source)).with_context(|| format!("cannot copy tensor {name} from {file}"))?;
    }
    Ok(matched)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_names_add_prefix_and_fix_layer_norm() {
        assert_eq!(
            canonical_name("embeddings.word_embeddings.weight", "bert"),
            "bert.embeddings.word_embeddings.weight"
        );
        assert_eq!(
            canonical_name("bert.encoder.layer.0.output.LayerNorm.gamma", "bert"),
            "bert.encoder.layer.0.output.LayerNorm.weight"
        );
        assert_eq!(
            canonical_name("transformer.layer.1.ffn.lin1.bias", "distilbert"),
            "distilbert.transformer.layer.1.ffn.lin1.bias"
        );
        assert_eq!(
            canonical_name("distilbert.embeddings.LayerNorm.weight", "distilbert"),
            "distilbert.embeddings.LayerNorm.weight"
        );
        assert_eq!(canonical_name("heads.trec.weight", "bert"), "heads.trec.weight");
    }

    #[test]
    fn load_reports_missing_unused_and_shape_errors() {
        let vs = VarStore::new(tch::Device::Cpu);
        let root = vs.root();
        let _w = root.sub("bert").sub("embeddings").zeros("w", &[2]);
        let _h = root.sub("heads").zeros("b", &[3]);
        let file = "x.safetensors";
        let tensors = BTreeMap::from([
            ("embeddings.w".to_string(), Tensor::from_slice(&[1.0f32, 2.0])),
            ("pooler.dense.weight".to_string(), Tensor::from_slice(&[0.0f32])),
        ]);
        let report = load_into(&vs, file, tensors, "bert").unwrap();
        assert_eq!(report.found.len(), 1);
        assert_eq!(report.missing, vec!["heads.b".to_string()]);
        let unused: Vec<&str> = report.unused.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(unused, vec!["bert.pooler.dense.weight"]);
        assert_eq!(Vec::<f32>::try_from(&vs.variables()["bert.embeddings.w"]).unwrap(), vec![1.0, 2.0]);

        let wrong = BTreeMap::from([("embeddings.w".to_string(), Tensor::from_slice(&[1.0f32, 2.0, 3.0]))]);
        let err = load_into(&vs, file, wrong, "bert").unwrap_err().to_string();
        assert!(err.contains("mismatches: ") && err.contains("bert.embeddings.w"), "{err}");
        let integers = BTreeMap::from([("embeddings.w".to_string(), Tensor::from_slice(&[1i64, 2]))]);
        let err = load_into(&vs, file, integers, "bert").unwrap_err().to_string();
        assert!(err.contains("bert.embeddings.w: file Int64 numbers, model floating point"), "{err}");

        let expected: BTreeMap<String, Vec<i64>> = (0..5).map(|i| (format!("bert.embeddings.t{i}"), vec![4])).collect();
        let narrow = (0..5)
            .map(|i| (format!("embeddings.t{i}"), Tensor::zeros([2], (tch::Kind::Float, tch::Device::Cpu))))
            .collect();
        let err = match_tensors(file, narrow, &expected, "bert").unwrap_err().to_string();
        assert!(err.ends_with("bert.embeddings.t2: file [2], model [4]; and 2 more"), "{err}");
    }
}
