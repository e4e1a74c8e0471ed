//! Unit tests of the pruning, on small hand-built modules.

use super::*;
use wasm_encoder::{
    CodeSection, ConstExpr, ElementSection, Elements, EntityType, ExportKind, ExportSection,
    Function, FunctionSection, ImportSection, Instruction, MemorySection, MemoryType, Module,
    RefType, TableSection, TableType, TypeSection, ValType,
};

/// imports: 0 `env.used`, 1 `env.unused`; defined: 2 `a` (calls 3 and 0), 3 `b`,
/// 4 `c` (exported, calls 5), 5 `d` (only c reaches it), 6 `e` (in the table only),
/// 7 `f` (reached from nothing); exports a, c, memory.
fn module() -> Vec<u8> {
    let mut m = Module::new();
    let mut types = TypeSection::new();
    types.ty().function([], []);
    types.ty().function([ValType::I32], [ValType::I32]);
    m.section(&types);
    let mut imports = ImportSection::new();
    imports.import("env", "used", EntityType::Function(0));
    imports.import("env", "unused", EntityType::Function(1));
    m.section(&imports);
    let mut funcs = FunctionSection::new();
    for _ in 0..6 {
        funcs.function(0);
    }
    m.section(&funcs);
    let mut tables = TableSection::new();
    tables.table(TableType {
        element_type: RefType::FUNCREF,
        table64: false,
        minimum: 1,
        maximum: Some(1),
        shared: false,
    });
    m.section(&tables);
    let mut mems = MemorySection::new();
    mems.memory(MemoryType {
        minimum: 1,
        maximum: None,
        memory64: false,
        shared: false,
        page_size_log2: None,
    });
    m.section(&mems);
    let mut exports = ExportSection::new();
    exports.export("a", ExportKind::Func, 2);
    exports.export("c", ExportKind::Func, 4);
    exports.export("memory", ExportKind::Memory, 0);
    m.section(&exports);
    let mut elems = ElementSection::new();
    elems.active(
        Some(0),
        &ConstExpr::i32_const(0),
        Elements::Functions(std::borrow::Cow::Borrowed(&[6])),
    );
    m.section(&elems);
    let mut code = CodeSection::new();
    let body = |calls: &[u32]| {
        let mut f = Function::new([]);
        for c in calls {
            f.instruction(&Instruction::Call(*c));
        }
        f.instruction(&Instruction::End);
        f
    };
    code.function(&body(&[3, 0])); // a
    code.function(&body(&[])); // b
    code.function(&body(&[5])); // c
    code.function(&body(&[])); // d
    code.function(&body(&[])); // e
    code.function(&body(&[])); // f
    m.section(&code);
    m.finish()
}

fn calls_of(wasm: &[u8]) -> Vec<Vec<u32>> {
    let mut out = Vec::new();
    for p in Parser::new(0).parse_all(wasm) {
        if let Ok(Payload::CodeSectionEntry(body)) = p {
            let mut v = Vec::new();
            let _ = callees(&body, &mut v);
            out.push(v);
        }
    }
    out
}

#[test]
fn keeps_what_the_kept_exports_and_the_table_reach() {
    let r = prune(&module(), &["a"]).unwrap();
    assert_eq!(export_names(&r.wasm).unwrap(), ["a", "memory"]);
    assert_eq!(r.removed_exports, ["c"]);
    // a, b, e stay (e: in the table); c, d, f go. Imports: `used` stays, `unused` goes.
    assert_eq!(r.functions, (6, 3));
    assert_eq!(r.function_imports, (2, 1));
    // New indices: 0 used, 1 a, 2 b, 3 e. a still calls b, then `used`.
    assert_eq!(calls_of(&r.wasm), vec![vec![2, 0], vec![], vec![]]);
}

#[test]
fn keeping_everything_changes_nothing_but_the_encoding() {
    let input = module();
    let r = prune(&input, &["a", "c"]).unwrap();
    assert_eq!(r.functions, (6, 5)); // f is reached by nothing
    assert_eq!(export_names(&r.wasm).unwrap(), ["a", "c", "memory"]);
    // Pruning twice gives the same bytes.
    let again = prune(&r.wasm, &["a", "c"]).unwrap();
    assert_eq!(again.wasm, r.wasm);
}

#[test]
fn the_code_check_catches_a_wrong_renumbering() {
    let input = module();
    let r = prune(&input, &["a"]).unwrap();
    let s = scan(&input).unwrap();
    // The right map: used 0, a 1, b 2, e 3.
    let good = [Some(0), None, Some(1), Some(2), None, None, Some(3), None];
    same_code(&s, &r.wasm, &good).unwrap();
    // b and e swapped: a's `call b` no longer matches.
    let bad = [Some(0), None, Some(1), Some(3), None, None, Some(2), None];
    let e = same_code(&s, &r.wasm, &bad).unwrap_err();
    assert!(e.contains("function 2"), "{e}");
}

#[test]
fn a_missing_export_is_an_error() {
    let e = prune(&module(), &["a", "nope"]).unwrap_err();
    assert!(e.contains("nope"), "{e}");
}

#[test]
fn garbage_is_an_error() {
    assert!(prune(b"\0asm\x01\0\0\0garbage", &[]).is_err());
    assert!(prune(b"not wasm", &[]).is_err());
}
