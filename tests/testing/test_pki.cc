// tests/testing/test_pki.cc
#include "tests/testing/test_pki.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <fstream>
#include <sstream>

#include "tests/testing/server_process.h"

namespace snapconf::testing {

std::string ReadTextFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteTextFile(const std::string& path, const std::string& contents, mode_t mode) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << contents;
  ::chmod(path.c_str(), mode);
}

TestPki::TestPki() : dir_(::testing::TempDir() + "/pkiXXXXXX") {
  if (::mkdtemp(dir_.data()) == nullptr) ADD_FAILURE() << "mkdtemp";
}

TestPki::~TestPki() { RunCommand({"/bin/rm", "-rf", dir_}); }

void TestPki::MakeCa(const std::string& name) {
  Run({"req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
       "-keyout", Path(name + ".key"), "-out", Path(name + ".pem"), "-days", "2", "-subj",
       "/CN=snapconf-test-ca"});
}

void TestPki::MakeLeaf(const std::string& name, const std::string& ca, const std::string& subject,
                       int days) {
  Run({"req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
       Path(name + ".key"), "-out", Path(name + ".csr"), "-subj", subject});
  WriteTextFile(Path("san.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n", 0644);
  Run({"x509", "-req", "-in", Path(name + ".csr"), "-CA", Path(ca + ".pem"), "-CAkey",
       Path(ca + ".key"), "-CAcreateserial", "-out", Path(name + ".pem"), "-days",
       std::to_string(days), "-extfile", Path("san.ext")});
}

void TestPki::Run(std::vector<std::string> args) {
  args.insert(args.begin(), "/usr/bin/openssl");
  CommandResult r = RunCommand(args);
  ASSERT_EQ(r.exit_code, 0) << r.stderr_text;
}

}  // namespace snapconf::testing
