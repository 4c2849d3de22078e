//! NumPy `.npy` (format 1.0) for a little-endian float32 matrix.

use std::io::Write;

use anyhow::Result;

/// Writes `values` (row-major, `rows x cols`) as an `.npy` array of shape `(rows, cols)`.
pub fn write_f32_matrix(out: &mut dyn Write, values: &[f32], rows: usize, cols: usize) -> Result<()> {
    assert_eq!(values.len(), rows * cols, "matrix data does not match its shape");
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    // Magic (6) + version (2) + header length (2) + header + '\n' must be a multiple of 64.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    out.write_all(b"\x93NUMPY\x01\x00")?;
    out.write_all(&(header.len() as u16).to_le_bytes())?;
    out.write_all(header.as_bytes())?;
    for v in values {
        out.write_all(&v.to_le_bytes())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_aligned_and_data_follows() {
        let mut buf = Vec::new();
        write_f32_matrix(&mut buf, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 2, 3).unwrap();
        let header_len = u16::from_le_bytes([buf[8], buf[9]]) as usize;
        assert_eq!((10 + header_len) % 64, 0);
        let header = std::str::from_utf8(&buf[10..10 + header_len]).unwrap();
        assert!(header.contains("'shape': (2, 3)"));
        assert_eq!(buf.len(), 10 + header_len + 6 * 4);
        assert_eq!(&buf[10 + header_len..10 + header_len + 4], &1.0f32.to_le_bytes());
    }
}
