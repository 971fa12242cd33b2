// Tests of flowless/io/pyconfig.hpp: mmengine-style Python configs read
// without Python (syntax, _base_ merging, errors naming file, line and column).
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "flowless/io/pyconfig.hpp"
#include "test_util.hpp"

namespace {

using flowless::json::Value;

std::string pc_dir() {
  static const flowless::test::ScratchDir d("pyconfig");
  return d.path;
}

std::string pc_write(const std::string& name, const std::string& text) {
  const std::string p = pc_dir() + "/" + name;
  std::ofstream(p) << text;
  return p;
}


}  // namespace

TEST_CASE("pyconfig reads literals, dict(), tuples, names and arithmetic") {
  const std::string p = pc_write("syntax.py", R"PY("""A docstring, ignored."""
# a comment
data_path = 'data/feats/'
block_list = data_path + "missing.txt"  # string +
win = [1] * 3 + [9]
neg = -1e-4
big = 1_000
hexv = 0x10
half = 7 // 2
ratio = 3 / 2
flags = (True, False, None)
one = (5,)
empty = ()
joined = "a" 'b' \
    "c"
raw = r'\d+'
esc = 'x\ty'
model = dict(
    type="ActionFormer",
    projection=dict(in_channels=2048, arch=(2, 2, 5), attn_cfg=dict(n_head=4,),),
    rr=[(0, 4), (4, 8)],
    braces={"a": 1, 'b': [2.5, .5]},
    paren=(1 + 2) * 3,
)
)PY");
  const Value v = flowless::io::read_pyconfig(p);
  CHECK(v.at("block_list").as_string() == "data/feats/missing.txt");
  REQUIRE(v.at("win").size() == 4);
  CHECK(v.at("win")[0].as_number() == 1);
  CHECK(v.at("win")[3].as_number() == 9);
  CHECK(v.at("neg").as_number() == -1e-4);
  CHECK(v.at("big").as_number() == 1000);
  CHECK(v.at("hexv").as_number() == 16);
  CHECK(v.at("half").as_number() == 3);
  CHECK(v.at("ratio").as_number() == 1.5);
  CHECK(v.at("flags")[0].as_bool());
  CHECK(!v.at("flags")[1].as_bool());
  CHECK(v.at("flags")[2].is_null());
  CHECK(v.at("one").size() == 1);
  CHECK(v.at("empty").is_array());
  CHECK(v.at("empty").size() == 0);
  CHECK(v.at("joined").as_string() == "abc");
  CHECK(v.at("raw").as_string() == "\\d+");
  CHECK(v.at("esc").as_string() == "x\ty");
  const Value& m = v.at("model");
  CHECK(m.at("type").as_string() == "ActionFormer");
  CHECK(m.at("projection").at("arch")[2].as_number() == 5);
  CHECK(m.at("projection").at("attn_cfg").at("n_head").as_number() == 4);
  CHECK(m.at("rr")[1][0].as_number() == 4);
  CHECK(m.at("braces").at("b")[1].as_number() == 0.5);
  CHECK(m.at("paren").as_number() == 9);
  CHECK(!v.contains("_base_"));
}

TEST_CASE("pyconfig merges _base_ files as mmengine does") {
  pc_write("base_data.py", R"PY(root = "data/"
dataset = dict(test=dict(feature_stride=4, data_path=root + "feats/"), keep=1)
evaluation = dict(tiou=[0.3, 0.5])
)PY");
  pc_write("base_model.py", R"PY(model = dict(projection=dict(in_channels=2048, out_channels=512, arch=(2, 2, 5)),
             rpn_head=dict(num_classes=20))
)PY");
  const std::string child = pc_write("child.py", R"PY(_base_ = ["base_data.py", "base_model.py"]
model = dict(projection=dict(in_channels=32))
evaluation = dict(_delete_=True, tiou=[0.5])
extra = root + "x"   # a base's name is visible here
)PY");
  const Value v = flowless::io::read_pyconfig(child);
  const Value& proj = v.at("model").at("projection");
  CHECK(proj.at("in_channels").as_number() == 32);   // overridden
  CHECK(proj.at("out_channels").as_number() == 512);  // kept from the base
  CHECK(v.at("model").at("rpn_head").at("num_classes").as_number() == 20);
  CHECK(v.at("dataset").at("test").at("data_path").as_string() == "data/feats/");
  CHECK(v.at("evaluation").size() == 1);  // replaced, _delete_ dropped
  CHECK(v.at("evaluation").at("tiou").size() == 1);
  CHECK(v.at("extra").as_string() == "data/x");

  // a single base as a string, in a sub-folder relative to the including file
  std::filesystem::create_directories(pc_dir() + "/sub");
  const std::string single = pc_write("sub/single.py", "_base_ = '../base_model.py'\nmodel = dict(rpn_head=dict(num_classes=5))\n");
  CHECK(flowless::io::read_pyconfig(single).at("model").at("rpn_head").at("num_classes").as_number() == 5);
}

TEST_CASE("pyconfig errors name the file, the line and the problem") {
  using flowless::io::read_pyconfig;
  FLOWLESS_CHECK_ERROR(read_pyconfig(pc_dir() + "/missing.py"), "missing.py");
  FLOWLESS_CHECK_ERROR(read_pyconfig(pc_write("imp.py", "x = 1\nimport os\n")), "imp.py", "line 2", "'import'");
  FLOWLESS_CHECK_ERROR(read_pyconfig(pc_write("undef.py", "a = dict(b=c)\n")), "undef.py", "line 1, column 12",
                 "name 'c' is not defined");
  FLOWLESS_CHECK_ERROR(read_pyconfig(pc_write("fstr.py", "x = 1\ny = f'{x}'\n")), "fstr.py", "line 2", "f-strings");
  FLOWLESS_CHECK_ERROR(read_pyconfig(pc_write("call.py", "x = list((1, 2))\n")), "calls to 'list'");
  FLOWLESS_CHECK_ERROR(read_pyconfig(pc_write("attr.py", "x = dict(a=1).a\n")), "attribute access");
  FLOWLESS_CHECK_ERROR(read_pyconfig(pc_write("unterm.py", "x = 'abc\n")), "unterminated string");
  FLOWLESS_CHECK_ERROR(read_pyconfig(pc_write("unbal.py", "x = [1, 2\ny = 3\n")), "unbal.py", "expected ','");
  FLOWLESS_CHECK_ERROR(read_pyconfig(pc_write("close.py", "x = 1)\n")), "close.py", "unbalanced ')'");
  FLOWLESS_CHECK_ERROR(read_pyconfig(pc_write("comp.py", "x = [i for i in y]\n")), "comprehensions");
  FLOWLESS_CHECK_ERROR(read_pyconfig(pc_write("typ.py", "x = 'a' - 1\n")), "unsupported operation: a string - a number");
  FLOWLESS_CHECK_ERROR(read_pyconfig(pc_write("div.py", "x = 1 / 0\n")), "division by zero");
  FLOWLESS_CHECK_ERROR(flowless::io::parse_pyconfig("_base_ = 'a.py'\n", "mem.py"), "mem.py: line 1", "needs a config file");
  CHECK(flowless::io::parse_pyconfig("x = dict(a=(1, 2))\n", "mem.py").at("x").at("a")[1].as_number() == 2);
  FLOWLESS_CHECK_ERROR(read_pyconfig(pc_write("big.py", "x = ('abc' * 1000000) * 1000000\n")), "is too large");
  FLOWLESS_CHECK_ERROR(read_pyconfig(pc_write("nobase.py", "_base_ = 'nothere.py'\n")), "nobase.py", "'nothere.py' not found");
  pc_write("cyc_a.py", "_base_ = 'cyc_b.py'\n");
  pc_write("cyc_b.py", "_base_ = 'cyc_a.py'\n");
  FLOWLESS_CHECK_ERROR(read_pyconfig(pc_dir() + "/cyc_a.py"), "include each other");
  pc_write("dup_a.py", "model = dict(a=1)\n");
  pc_write("dup_b.py", "model = dict(b=1)\n");
  FLOWLESS_CHECK_ERROR(read_pyconfig(pc_write("dup.py", "_base_ = ['dup_a.py', 'dup_b.py']\n")), "'model' is defined by two _base_ files");
  FLOWLESS_CHECK_ERROR(read_pyconfig(pc_write("deep.py", "x = " + std::string(300, '[') + std::string(300, ']') + "\n")),
                 "nesting deeper than 256");
}
