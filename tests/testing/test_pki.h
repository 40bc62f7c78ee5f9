// tests/testing/test_pki.h
//
// A throwaway PKI for tests that run snapconfd over TLS: CAs, server and
// client certificates made at run time with the openssl command in a
// temporary directory (nothing secret is committed), and small file helpers
// for tokens and policy files.
//
// Thread safety: a TestPki is used from one thread (the test's).
//
//   TestPki pki;
//   pki.MakeCa("ca");
//   pki.MakeLeaf("server", "ca", "/CN=snapconfd");
//   flags = {"--tls-cert-file=" + pki.Path("server.pem"), ...};
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace snapconf::testing {

std::string ReadTextFile(const std::string& path);
// Writes `contents` to `path` (replacing it) and sets its mode.
void WriteTextFile(const std::string& path, const std::string& contents, mode_t mode = 0600);

class TestPki {
 public:
  TestPki();
  ~TestPki();
  TestPki(const TestPki&) = delete;
  TestPki& operator=(const TestPki&) = delete;

  std::string Path(const std::string& name) const { return dir_ + "/" + name; }

  // A self-signed CA named `name`, with subject CN=snapconf-test-ca.
  void MakeCa(const std::string& name);
  // A key and a certificate `name` signed by `ca`, valid for `days`
  // (negative: expired), for 127.0.0.1 and localhost.
  void MakeLeaf(const std::string& name, const std::string& ca, const std::string& subject,
                int days = 2);

 private:
  void Run(std::vector<std::string> args);
  std::string dir_;
};

}  // namespace snapconf::testing
