#!/usr/bin/env python3
"""nvc-core's public API as sorted text, one item a line, from rustdoc's JSON.

Every public item of nvc-core, at the path users name it by — the items it re-exports from
nvc-driver and nvc-mount included, with their fields, variants and methods, since those are
nvc-core's API too (rustdoc's JSON does not inline them: they are read from those crates'
JSON). The committed `nvc-core/public-api.txt` is this script's output; `.ci/run` fails when
the two differ, so an API change is always a visible diff in review.

Usage (what `.ci/run` does):

    rm -rf target/public-api/doc &&
    RUSTC_BOOTSTRAP=1 RUSTDOCFLAGS='-Z unstable-options --output-format json' \\
        cargo doc --no-deps --all-features -p nvc-core -p nvc-driver -p nvc-mount \\
        --target-dir target/public-api &&
    python3 .ci/public-api.py target/public-api/doc > nvc-core/public-api.txt

What it does not see: the serialised forms (nvc-core's `Plan` has its own, versioned, read
back by `nvc-core/tests/plan_format.rs`) and the order of fields and variants (sorted out).
"""

import json
import sys
from pathlib import Path

FORMAT_VERSIONS = {57}  # rustdoc JSON of the declared toolchain (Rust 1.95)
CRATES = ("nvc_core", "nvc_driver", "nvc_mount")
AUTO_TRAITS = {"Send", "Sync"}


class Crate:
    def __init__(self, doc, name):
        self.name = name
        self.data = json.loads((doc / f"{name}.json").read_text())
        version = self.data["format_version"]
        if version not in FORMAT_VERSIONS:
            sys.exit(f"{name}.json: rustdoc JSON format {version}, this script reads {FORMAT_VERSIONS}")
        self.index = self.data["index"]

    def item(self, id_):
        return self.index.get(str(id_))

    def by_path(self, path):
        """The local item a crate-level path names (a re-export's target in this crate)."""
        for id_, summary in self.data["paths"].items():
            if summary["crate_id"] == 0 and summary["path"] == path and id_ in self.index:
                return self.index[id_]
        return None


def ty(t):
    """A type as Rust source spells it."""
    if t is None:
        return "()"
    (kind, v), = t.items()
    if kind == "resolved_path":
        return v["path"] + args(v.get("args"))
    if kind == "primitive" or kind == "generic":
        return v
    if kind == "borrowed_ref":
        life = f"{v['lifetime']} " if v.get("lifetime") else ""
        return f"&{life}{'mut ' if v['is_mutable'] else ''}{ty(v['type'])}"
    if kind == "slice":
        return f"[{ty(v)}]"
    if kind == "array":
        return f"[{ty(v['type'])}; {v['len']}]"
    if kind == "tuple":
        return "(" + ", ".join(ty(x) for x in v) + ("," if len(v) == 1 else "") + ")"
    if kind == "impl_trait":
        return "impl " + " + ".join(bound(b) for b in v)
    if kind == "dyn_trait":
        traits = [p["trait"]["path"] + args(p["trait"].get("args")) for p in v["traits"]]
        life = [v["lifetime"]] if v.get("lifetime") else []
        return "dyn " + " + ".join(traits + life)
    if kind == "raw_pointer":
        return f"*{'mut' if v['is_mutable'] else 'const'} {ty(v['type'])}"
    if kind == "qualified_path":
        trait = v.get("trait")
        self_ty = ty(v["self_type"])
        return f"<{self_ty} as {trait['path']}>::{v['name']}" if trait else f"{self_ty}::{v['name']}"
    if kind == "function_pointer":
        sig = v["sig"]
        return "fn(" + ", ".join(ty(i[1]) for i in sig["inputs"]) + ") -> " + ty(sig["output"])
    return kind


def args(a):
    if not a:
        return ""
    if "angle_bracketed" in a:
        out = []
        for x in a["angle_bracketed"]["args"]:
            (k, v), = x.items()
            out.append(ty(v) if k == "type" else v if k == "lifetime" else str(v))
        for c in a["angle_bracketed"].get("constraints", []):
            out.append(f"{c['name']} = {ty(c['binding'].get('equality', {}).get('type'))}")
        return "<" + ", ".join(out) + ">" if out else ""
    if "parenthesized" in a:
        p = a["parenthesized"]
        return "(" + ", ".join(ty(x) for x in p["inputs"]) + ") -> " + ty(p.get("output"))
    return ""


def bound(b):
    if "trait_bound" in b:
        t = b["trait_bound"]["trait"]
        return ("?" if b["trait_bound"].get("modifier") == "maybe" else "") + t["path"] + args(t.get("args"))
    if "outlives" in b:
        return b["outlives"]
    return "?"


def generics(g):
    params = []
    for p in g["params"]:
        (k, v), = p["kind"].items()
        if k == "type":
            bounds = " + ".join(bound(b) for b in v["bounds"])
            params.append(p["name"] + (f": {bounds}" if bounds else ""))
        elif k == "lifetime":
            params.append(p["name"])
        elif k == "const":
            params.append(f"const {p['name']}: {ty(v['type'])}")
    params = [p for p in params if not p.startswith("impl ")]
    return "<" + ", ".join(params) + ">" if params else ""


def signature(name, f):
    sig = f["sig"]
    header = f["header"]
    quals = ("const " if header["is_const"] else "") + ("unsafe " if header["is_unsafe"] else "")
    inputs = []
    for arg, t in sig["inputs"]:
        if arg == "self":
            inputs.append({"&Self": "&self", "&mut Self": "&mut self", "Self": "self"}.get(ty(t), f"self: {ty(t)}"))
        else:
            inputs.append(f"{arg}: {ty(t)}")
    out = "" if sig["output"] is None else f" -> {ty(sig['output'])}"
    return f"pub {quals}fn {name}{generics(f['generics'])}({', '.join(inputs)}){out}"


def attrs(item):
    marks = []
    for a in item.get("attrs", []):
        if a == "non_exhaustive" or (isinstance(a, dict) and "non_exhaustive" in a):
            marks.append("#[non_exhaustive] ")
    return "".join(marks)


def impls(crate, path, ids, out):
    for impl_id in ids:
        impl = crate.item(impl_id)["inner"]["impl"]
        if impl["blanket_impl"] is not None:
            continue
        trait = impl["trait"]
        if trait is None:
            for m in impl["items"]:
                member = crate.item(m)
                if member and member["visibility"] == "public" and "function" in member["inner"]:
                    out.append(f"{signature(path + '::' + member['name'], member['inner']['function'])}")
                elif member and member["visibility"] == "public" and "assoc_const" in member["inner"]:
                    out.append(f"pub const {path}::{member['name']}: {ty(member['inner']['assoc_const']['type'])}")
            continue
        name = trait["path"]
        short = name.rsplit("::", 1)[-1]
        if impl["is_synthetic"] and short not in AUTO_TRAITS:
            continue
        out.append(f"impl {'!' if impl['is_negative'] else ''}{name}{args(trait.get('args'))} for {path}")


def fields(crate, path, ids, out):
    for f in ids:
        field = crate.item(f)
        if field is not None:
            out.append(f"pub {path}::{field['name']}: {ty(field['inner']['struct_field'])}")


def render(crates, crate, item, path, out):
    inner = item["inner"]
    (kind, v), = inner.items()
    if kind == "module":
        for child in v["items"]:
            render_child(crates, crate, crate.item(child), path, out)
    elif kind == "struct":
        out.append(f"{attrs(item)}pub struct {path}{generics(v['generics'])}")
        k = v["kind"]
        if "plain" in k:
            fields(crate, path, k["plain"]["fields"], out)
        elif "tuple" in k:
            out.append(f"pub struct {path}(" + ", ".join(
                ty(crate.item(f)["inner"]["struct_field"]) if f is not None else "_" for f in k["tuple"]) + ")")
        impls(crate, path, v["impls"], out)
    elif kind == "enum":
        out.append(f"{attrs(item)}pub enum {path}{generics(v['generics'])}")
        for var_id in v["variants"]:
            var = crate.item(var_id)
            vk = var["inner"]["variant"]["kind"]
            vpath = f"{path}::{var['name']}"
            out.append(f"{attrs(var)}{vpath}")
            if isinstance(vk, dict) and "struct" in vk:
                fields(crate, vpath, vk["struct"]["fields"], out)
            elif isinstance(vk, dict) and "tuple" in vk:
                out.append(vpath + "(" + ", ".join(
                    ty(crate.item(f)["inner"]["struct_field"]) if f is not None else "_" for f in vk["tuple"]) + ")")
        impls(crate, path, v["impls"], out)
    elif kind == "function":
        out.append(signature(path, v))
    elif kind == "constant":
        out.append(f"pub const {path}: {ty(v['type'])}")
    elif kind == "static":
        out.append(f"pub static {path}: {ty(v['type'])}")
    elif kind == "type_alias":
        out.append(f"pub type {path}{generics(v['generics'])} = {ty(v['type'])}")
    elif kind == "trait":
        out.append(f"pub trait {path}")
    else:
        out.append(f"pub {kind} {path}")


def render_child(crates, crate, item, prefix, out):
    if item is None or item["visibility"] != "public":
        return
    inner = item["inner"]
    if "use" in inner:
        use = inner["use"]
        if use["is_glob"]:
            sys.exit(f"glob re-export {use['source']} in {prefix}: list the items")
        target = crate.item(use["id"]) if use["id"] is not None else None
        owner = crate
        if target is None:
            summary = crate.data["paths"].get(str(use["id"]))
            owner = crates.get(summary["path"][0]) if summary else None
            if owner is None:
                # A re-export from outside the workspace (oci_spec): its version is the policy.
                out.append(f"pub use {prefix}::{use['name']} = {use['source']}")
                return
            target = owner.by_path(summary["path"])
            if target is None:
                sys.exit(f"{use['source']}: not found in {owner.name}.json")
        render(crates, owner, target, f"{prefix}::{use['name']}", out)
        return
    render(crates, crate, item, f"{prefix}::{item['name']}", out)


def main():
    doc = Path(sys.argv[1])
    crates = {name: Crate(doc, name) for name in CRATES}
    core = crates["nvc_core"]
    out = []
    render(crates, core, core.item(core.data["root"]), "nvc_core", out)
    print("\n".join(sorted(set(out))))


if __name__ == "__main__":
    main()
