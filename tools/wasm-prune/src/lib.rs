//! Keep only the named function exports of a core wasm module, and remove the functions (and
//! function imports) that nothing kept can reach.
//!
//! It only removes. What stays is re-encoded item for item and instruction for instruction
//! (`wasm_encoder::reencode`), with function indices renumbered: no instruction, local, type,
//! global, table, memory or data segment is changed, merged or reordered. What counts as reached:
//! the kept exports, the start function, every function in an element segment (a
//! `call_indirect` may reach any of them) or named by `ref.func` in a constant expression, and,
//! transitively, every `call`, `return_call` and `ref.func` in a reached body. Non-function
//! exports (the memory) always stay. A `name` custom section is dropped (its function indices
//! would be stale); other custom sections are copied as they are. Every run validates the output
//! and checks that each kept body has the original's locals and instructions, in order, with
//! only function indices renumbered (an error otherwise). Sizes still shrink beyond the removed
//! code: the linker pads call immediates to 5-byte LEB128s, re-encoding writes them minimal.

use std::collections::BTreeSet;

use wasm_encoder::reencode::{utils, Error as ReError, Reencode};
use wasmparser::{
    ElementItems, ExternalKind, FunctionBody, Operator, Parser, Payload, TypeRef, Validator,
};

/// What [`prune`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The pruned module.
    pub wasm: Vec<u8>,
    /// Function exports removed, by name (sorted).
    pub removed_exports: Vec<String>,
    /// Function exports kept, by name (sorted).
    pub kept_exports: Vec<String>,
    /// Defined functions before and after.
    pub functions: (usize, usize),
    /// Function imports before and after.
    pub function_imports: (usize, usize),
    /// Custom sections dropped (a `name` section).
    pub dropped_custom_sections: Vec<String>,
}

/// What the first pass learns about the module.
struct Scan<'a> {
    imported_funcs: u32,
    defined_funcs: u32,
    func_exports: Vec<(&'a str, u32)>,
    roots: Vec<u32>,
    bodies: Vec<FunctionBody<'a>>,
}

fn scan(wasm: &[u8]) -> Result<Scan<'_>, String> {
    let mut s = Scan {
        imported_funcs: 0,
        defined_funcs: 0,
        func_exports: Vec::new(),
        roots: Vec::new(),
        bodies: Vec::new(),
    };
    for payload in Parser::new(0).parse_all(wasm) {
        match payload.map_err(|e| format!("parse: {e}"))? {
            Payload::Version { encoding, .. } if encoding != wasmparser::Encoding::Module => {
                return Err("not a core wasm module (a component?)".into());
            }
            Payload::ImportSection(section) => {
                for import in section.into_imports() {
                    let import = import.map_err(|e| format!("import section: {e}"))?;
                    if matches!(import.ty, TypeRef::Func(_) | TypeRef::FuncExact(_)) {
                        s.imported_funcs += 1;
                    }
                }
            }
            Payload::FunctionSection(section) => s.defined_funcs = section.count(),
            Payload::ExportSection(section) => {
                for export in section {
                    let export = export.map_err(|e| format!("export section: {e}"))?;
                    if matches!(export.kind, ExternalKind::Func | ExternalKind::FuncExact) {
                        s.func_exports.push((export.name, export.index));
                    }
                }
            }
            Payload::StartSection { func, .. } => s.roots.push(func),
            Payload::ElementSection(section) => {
                for element in section {
                    let element = element.map_err(|e| format!("element section: {e}"))?;
                    match element.items {
                        ElementItems::Functions(funcs) => {
                            for f in funcs {
                                s.roots
                                    .push(f.map_err(|e| format!("element section: {e}"))?);
                            }
                        }
                        ElementItems::Expressions(_, exprs) => {
                            for expr in exprs {
                                let expr = expr.map_err(|e| format!("element section: {e}"))?;
                                ref_funcs(expr.get_operators_reader(), &mut s.roots)?;
                            }
                        }
                    }
                }
            }
            Payload::GlobalSection(section) => {
                for global in section {
                    let global = global.map_err(|e| format!("global section: {e}"))?;
                    ref_funcs(global.init_expr.get_operators_reader(), &mut s.roots)?;
                }
            }
            Payload::CodeSectionEntry(body) => s.bodies.push(body),
            _ => {}
        }
    }
    Ok(s)
}

/// Every function a constant expression names with `ref.func`.
fn ref_funcs(mut ops: wasmparser::OperatorsReader<'_>, out: &mut Vec<u32>) -> Result<(), String> {
    while !ops.eof() {
        if let Operator::RefFunc { function_index } = ops.read().map_err(|e| e.to_string())? {
            out.push(function_index);
        }
    }
    Ok(())
}

/// Every function a body calls or takes a reference to.
fn callees(body: &FunctionBody<'_>, out: &mut Vec<u32>) -> Result<(), String> {
    let mut ops = body.get_operators_reader().map_err(|e| e.to_string())?;
    while !ops.eof() {
        match ops.read().map_err(|e| e.to_string())? {
            Operator::Call { function_index }
            | Operator::ReturnCall { function_index }
            | Operator::RefFunc { function_index } => out.push(function_index),
            _ => {}
        }
    }
    Ok(())
}

/// Re-encodes the module with the removed functions left out and the rest renumbered.
struct Renumber<'k> {
    /// Old function index → new one (`None`: removed).
    map: Vec<Option<u32>>,
    imported_funcs: u32,
    keep: &'k BTreeSet<&'k str>,
    dropped_custom_sections: Vec<String>,
}

impl Renumber<'_> {
    fn kept(&self, old: u32) -> bool {
        usize::try_from(old)
            .ok()
            .and_then(|i| self.map.get(i))
            .is_some_and(Option::is_some)
    }
}

impl Reencode for Renumber<'_> {
    type Error = String;

    fn function_index(&mut self, func: u32) -> Result<u32, ReError<String>> {
        usize::try_from(func)
            .ok()
            .and_then(|i| self.map.get(i).copied().flatten())
            .ok_or_else(|| {
                ReError::UserError(format!("function {func} is referenced but was removed"))
            })
    }

    fn parse_import_section(
        &mut self,
        imports: &mut wasm_encoder::ImportSection,
        section: wasmparser::ImportSectionReader<'_>,
    ) -> Result<(), ReError<String>> {
        let mut func = 0u32;
        for import in section.into_imports() {
            let import = import?;
            if matches!(import.ty, TypeRef::Func(_) | TypeRef::FuncExact(_)) {
                let old = func;
                func += 1;
                if !self.kept(old) {
                    continue;
                }
            }
            let ty = self.entity_type(import.ty)?;
            imports.import(import.module, import.name, ty);
        }
        Ok(())
    }

    fn parse_function_section(
        &mut self,
        functions: &mut wasm_encoder::FunctionSection,
        section: wasmparser::FunctionSectionReader<'_>,
    ) -> Result<(), ReError<String>> {
        for (i, ty) in (0u32..).zip(section) {
            let ty = ty?;
            if self.kept(self.imported_funcs + i) {
                functions.function(self.type_index(ty)?);
            }
        }
        Ok(())
    }

    fn parse_code_section(
        &mut self,
        code: &mut wasm_encoder::CodeSection,
        section: wasmparser::CodeSectionReader<'_>,
    ) -> Result<(), ReError<String>> {
        for (i, body) in (0u32..).zip(section) {
            let body = body?;
            if self.kept(self.imported_funcs + i) {
                utils::parse_function_body(self, code, body)?;
            }
        }
        Ok(())
    }

    fn parse_export(
        &mut self,
        exports: &mut wasm_encoder::ExportSection,
        export: wasmparser::Export<'_>,
    ) -> Result<(), ReError<String>> {
        let func = matches!(export.kind, ExternalKind::Func | ExternalKind::FuncExact);
        if func && !self.keep.contains(export.name) {
            return Ok(());
        }
        utils::parse_export(self, exports, export)
    }

    fn parse_custom_section(
        &mut self,
        module: &mut wasm_encoder::Module,
        section: wasmparser::CustomSectionReader<'_>,
    ) -> Result<(), ReError<String>> {
        if section.name() == "name" {
            self.dropped_custom_sections.push("name".into());
            return Ok(());
        }
        utils::parse_custom_section(self, module, section)
    }
}

fn reencode_error(e: ReError<String>) -> String {
    match e {
        ReError::ParseError(e) => format!("parse: {e}"),
        other => other.to_string(),
    }
}

/// Keeps the function exports named in `keep` (every one must exist) and removes the rest, with
/// every function only they reached. See the crate documentation for what "reached" means.
pub fn prune(wasm: &[u8], keep: &[&str]) -> Result<Report, String> {
    Validator::new()
        .validate_all(wasm)
        .map_err(|e| format!("the input does not validate: {e}"))?;
    let s = scan(wasm)?;
    let keep: BTreeSet<&str> = keep.iter().copied().collect();
    let exported: BTreeSet<&str> = s.func_exports.iter().map(|(n, _)| *n).collect();
    let missing: Vec<&str> = keep.difference(&exported).copied().collect();
    if !missing.is_empty() {
        return Err(format!(
            "asked to keep exports the module does not have: {}",
            missing.join(", ")
        ));
    }

    let total = s.imported_funcs.saturating_add(s.defined_funcs);
    let total_len = usize::try_from(total).map_err(|e| e.to_string())?;
    let mut reached = vec![false; total_len];
    let mut work: Vec<u32> = s.roots.clone();
    work.extend(
        s.func_exports
            .iter()
            .filter(|(n, _)| keep.contains(n))
            .map(|(_, i)| *i),
    );
    let mut found = Vec::new();
    while let Some(f) = work.pop() {
        let idx = usize::try_from(f).map_err(|e| e.to_string())?;
        let seen = reached
            .get_mut(idx)
            .ok_or_else(|| format!("function index {f} out of range"))?;
        if *seen {
            continue;
        }
        *seen = true;
        if let Some(defined) = f.checked_sub(s.imported_funcs) {
            let body = usize::try_from(defined)
                .ok()
                .and_then(|d| s.bodies.get(d))
                .ok_or_else(|| format!("function {f} has no body"))?;
            found.clear();
            callees(body, &mut found).map_err(|e| format!("function {f}: {e}"))?;
            work.extend(found.iter().copied());
        }
    }

    let mut map = Vec::with_capacity(total_len);
    let mut next = 0u32;
    for r in &reached {
        if *r {
            map.push(Some(next));
            next += 1;
        } else {
            map.push(None);
        }
    }
    let imported_len = usize::try_from(s.imported_funcs).map_err(|e| e.to_string())?;
    let kept_imports = reached.iter().take(imported_len).filter(|r| **r).count();
    let kept_defined = reached.iter().skip(imported_len).filter(|r| **r).count();

    let mut re = Renumber {
        map,
        imported_funcs: s.imported_funcs,
        keep: &keep,
        dropped_custom_sections: Vec::new(),
    };
    let mut module = wasm_encoder::Module::new();
    re.parse_core_module(&mut module, Parser::new(0), wasm)
        .map_err(reencode_error)?;
    let out = module.finish();
    Validator::new()
        .validate_all(&out)
        .map_err(|e| format!("the pruned module does not validate (a bug in wasm-prune): {e}"))?;
    same_code(&s, &out, &re.map)
        .map_err(|e| format!("the pruned module's code differs (a bug in wasm-prune): {e}"))?;

    let mut removed: Vec<String> = exported
        .difference(&keep)
        .map(|n| (*n).to_string())
        .collect();
    removed.sort();
    Ok(Report {
        wasm: out,
        removed_exports: removed,
        kept_exports: keep.iter().map(|n| (*n).to_string()).collect(),
        functions: (
            usize::try_from(s.defined_funcs).map_err(|e| e.to_string())?,
            kept_defined,
        ),
        function_imports: (imported_len, kept_imports),
        dropped_custom_sections: re.dropped_custom_sections,
    })
}

/// `op` with its function index (if any) renumbered by `map`.
fn renumbered<'a>(op: Operator<'a>, map: &[Option<u32>]) -> Result<Operator<'a>, String> {
    let new = |f: u32| {
        usize::try_from(f)
            .ok()
            .and_then(|i| map.get(i).copied().flatten())
            .ok_or_else(|| format!("a kept body references removed function {f}"))
    };
    Ok(match op {
        Operator::Call { function_index } => Operator::Call {
            function_index: new(function_index)?,
        },
        Operator::ReturnCall { function_index } => Operator::ReturnCall {
            function_index: new(function_index)?,
        },
        Operator::RefFunc { function_index } => Operator::RefFunc {
            function_index: new(function_index)?,
        },
        other => other,
    })
}

/// Checks that every kept body of the pruned module `out` is the original's: the same locals and
/// the same instructions in the same order, function indices renumbered by `map`.
fn same_code(s: &Scan<'_>, out: &[u8], map: &[Option<u32>]) -> Result<(), String> {
    let mut pruned = Vec::new();
    for payload in Parser::new(0).parse_all(out) {
        if let Payload::CodeSectionEntry(body) = payload.map_err(|e| e.to_string())? {
            pruned.push(body);
        }
    }
    let mut pruned = pruned.iter();
    for (i, old) in (0u32..).zip(&s.bodies) {
        let f = s.imported_funcs + i;
        let kept = usize::try_from(f)
            .ok()
            .and_then(|i| map.get(i))
            .is_some_and(Option::is_some);
        if !kept {
            continue;
        }
        let new = pruned
            .next()
            .ok_or_else(|| format!("function {f} has no body"))?;
        let locals = |b: &FunctionBody<'_>| -> Result<Vec<(u32, wasmparser::ValType)>, String> {
            b.get_locals_reader()
                .map_err(|e| e.to_string())?
                .into_iter()
                .collect::<Result<_, _>>()
                .map_err(|e| e.to_string())
        };
        if locals(old)? != locals(new)? {
            return Err(format!("function {f}: locals differ"));
        }
        let mut a = old.get_operators_reader().map_err(|e| e.to_string())?;
        let mut b = new.get_operators_reader().map_err(|e| e.to_string())?;
        loop {
            match (a.eof(), b.eof()) {
                (true, true) => break,
                (false, false) => {}
                _ => return Err(format!("function {f}: instruction counts differ")),
            }
            let want = renumbered(a.read().map_err(|e| e.to_string())?, map)?;
            let got = b.read().map_err(|e| e.to_string())?;
            if want != got {
                return Err(format!("function {f}: {want:?} became {got:?}"));
            }
        }
    }
    if pruned.next().is_some() {
        return Err("more bodies than kept functions".into());
    }
    Ok(())
}

/// The names of a module's exports, in section order (for tests and the CLI's `--list`).
pub fn export_names(wasm: &[u8]) -> Result<Vec<String>, String> {
    let mut names = Vec::new();
    for payload in Parser::new(0).parse_all(wasm) {
        if let Payload::ExportSection(section) = payload.map_err(|e| format!("parse: {e}"))? {
            for export in section {
                names.push(export.map_err(|e| e.to_string())?.name.to_string());
            }
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests;
