//! Loading an [`access::DataSet`](crate::access::DataSet) from a JSON file,
//! without any cloud: for the demo, for technicians and for tests.
//!
//! The file is the data set's serde form (the same shape the store
//! persists); see `docs/dataset-format.md` and the shipped example
//! `hub/examples/data/site.json`. [`load`] reads it, parses it and checks it
//! with [`View::build`]; each failure is a [`DataSetFileError`] that names
//! the file and, for a syntax or shape error, the line and column, or, for a
//! model error, the record at fault.

use std::io;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::access::{DataSet, ModelError, View};

/// Why a data-set file could not be loaded.
#[derive(Debug, Error)]
pub enum DataSetFileError {
    /// The file does not exist.
    #[error("{path}: data-set file not found")]
    NotFound {
        /// The path given.
        path: PathBuf,
    },
    /// The file exists but could not be read.
    #[error("{path}: cannot read the data-set file: {source}")]
    Read {
        /// The path given.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The file is not valid JSON (or ends early).
    #[error("{path}: JSON syntax error at line {line}, column {column}: {message}")]
    Syntax {
        /// The path given.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What the parser expected.
        message: String,
    },
    /// Valid JSON that is not a data set: a missing field, a wrong type, an
    /// unknown enum value, a bad time stamp.
    #[error("{path}: not a valid data set at line {line}, column {column}: {message}")]
    Shape {
        /// The path given.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// A data set that [`View::build`] rejects; the error names the record.
    #[error("{path}: {source}")]
    Model {
        /// The path given.
        path: PathBuf,
        /// The record at fault and what is wrong with it.
        #[source]
        source: ModelError,
    },
}

/// Reads, parses and checks the data-set file at `path`.
pub fn load(path: impl AsRef<Path>) -> Result<View, DataSetFileError> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => DataSetFileError::NotFound {
            path: path.to_owned(),
        },
        _ => DataSetFileError::Read {
            path: path.to_owned(),
            source,
        },
    })?;
    let data = parse(path, &text)?;
    View::build(data).map_err(|source| DataSetFileError::Model {
        path: path.to_owned(),
        source,
    })
}

/// Parses the text of a data-set file (`path` is for the errors only); does
/// not check it ([`View::build`] does).
pub fn parse(path: &Path, text: &str) -> Result<DataSet, DataSetFileError> {
    serde_json::from_str(text).map_err(|e| {
        let (line, column) = (e.line(), e.column());
        // serde_json's message ends with " at line L column C"; keep the
        // message alone, the variant prints the position.
        let full = e.to_string();
        let suffix = format!(" at line {line} column {column}");
        let message = full.strip_suffix(&suffix).unwrap_or(&full).to_owned();
        let path = path.to_owned();
        match e.classify() {
            serde_json::error::Category::Data => DataSetFileError::Shape {
                path,
                line,
                column,
                message,
            },
            _ => DataSetFileError::Syntax {
                path,
                line,
                column,
                message,
            },
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example shipped with the crate and shown in the docs.
    pub(crate) fn example_path() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/data/site.json")
    }

    #[test]
    fn shipped_example_loads() {
        let view = load(example_path()).unwrap();
        assert_eq!(view.data().site.time_zone, "Europe/Berlin");
        assert!(view.door("front").is_some() && view.door("back").is_some());
        assert!(view.user("201").is_some());
    }

    #[test]
    fn docs_example_is_the_shipped_file() {
        let docs = include_str!("../../docs/dataset-format.md");
        let example = include_str!("../examples/data/site.json");
        assert!(
            docs.contains(example.trim()),
            "docs/dataset-format.md must show hub/examples/data/site.json verbatim"
        );
    }

    #[test]
    fn missing_file_is_not_found() {
        let err = load("/nonexistent/site.json").unwrap_err();
        assert!(matches!(err, DataSetFileError::NotFound { .. }), "{err}");
        assert!(err.to_string().contains("/nonexistent/site.json"));
    }

    #[test]
    fn syntax_error_reports_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.json");
        std::fs::write(
            &path,
            "{\n  \"doors\": [\n    {\"id\": \"front\",, }\n  ]\n}\n",
        )
        .unwrap();
        let err = load(&path).unwrap_err();
        let DataSetFileError::Syntax { line, column, .. } = &err else {
            panic!("not a syntax error: {err}");
        };
        assert_eq!((*line, *column), (3, 20));
        let text = err.to_string();
        assert!(text.contains("line 3, column 20"), "{text}");
        assert!(text.contains("bad.json"), "{text}");
    }

    #[test]
    fn shape_error_reports_line_and_column() {
        let text = "{\n  \"doors\": [{\"id\": \"front\"}]\n}";
        let err = parse(Path::new("x.json"), text).unwrap_err();
        let DataSetFileError::Shape { line, message, .. } = &err else {
            panic!("not a shape error: {err}");
        };
        assert_eq!(*line, 2);
        assert!(message.contains("name"), "{message}");
    }

    #[test]
    fn model_error_names_the_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("site.json");
        let text = r#"{
            "site": {"id": "s", "name": "S", "time_zone": "Europe/Berlin"},
            "doors": [{"id": "front", "name": "Front Door"}],
            "users": [{"id": "201"}],
            "credentials": [{"id": "c-ann-pin", "user": "201", "access_method": "code", "code": "12ab"}]
        }"#;
        std::fs::write(&path, text).unwrap();
        let err = load(&path).unwrap_err();
        assert!(matches!(err, DataSetFileError::Model { .. }), "{err}");
        let text = err.to_string();
        assert!(text.contains("credential c-ann-pin"), "{text}");
        assert!(!text.contains("12ab"), "the PIN is never printed: {text}");
    }
}
