#include "emulator/topology.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "emulator/unique_fd.h"

namespace {

using emulator::last_error;
using emulator::Topology;

Topology parse_ok(const std::string& yaml) {
  auto t = Topology::parse(yaml, "t.yaml");
  EXPECT_TRUE(t.has_value()) << last_error();
  return t ? *t : Topology{};
}

// The error for a file, which must name the file, the line and `words`.
void expect_error(const std::string& yaml, int line, const std::string& words) {
  auto t = Topology::parse(yaml, "t.yaml");
  ASSERT_FALSE(t.has_value()) << yaml;
  EXPECT_EQ(t.error(), miniport::Status::kInvalidData);
  EXPECT_NE(last_error().find("t.yaml:" + std::to_string(line) + ":"), std::string::npos) << last_error();
  EXPECT_NE(last_error().find(words), std::string::npos) << last_error();
}

TEST(Topology, ReadsNodesLinksAndEachNodesSettings) {
  const Topology t = parse_ok(R"(
name: lab1
mtu: 9000
nodes:
  alpha: {}
  beta: {address: beta.r2, mtu: 1500, queues: 4, capture: true, impair: {loss: 1%, seed: 3}}
  gamma:
links:
  - alpha-beta
  - {between: [beta, gamma]}
)");
  EXPECT_EQ(t.lab.name, "lab1");
  EXPECT_EQ(t.lab.mtu, 9000u);
  ASSERT_EQ(t.lab.nodes, (std::vector<std::string>{"alpha", "beta", "gamma"}));
  ASSERT_EQ(t.lab.node_options.size(), 3u);
  EXPECT_EQ(t.lab.node_options[0], emulator::LabNodeOptions{});
  const auto& b = t.lab.node_options[1];
  EXPECT_EQ(b.address, "beta.r2");
  EXPECT_EQ(b.mtu, 1500u);
  EXPECT_EQ(b.queues, 4u);
  EXPECT_EQ(b.impair, "loss=1%,seed=3");
  EXPECT_EQ(b.pcap, "./lab1-beta.pcap");
  EXPECT_TRUE(b.listen.empty()) << "no process for a node that does not ask";
  const Topology l = parse_ok("name: l\nnodes:\n  a: {listen: 42}\n  b: {listen: {sap: [7, service:echo], mode: echo}}\n");
  EXPECT_EQ(l.lab.node_options[0].listen, (std::vector<std::string>{"42"}));
  EXPECT_EQ(l.lab.node_options[0].listen_mode, "accept");
  EXPECT_EQ(l.lab.node_options[1].listen, (std::vector<std::string>{"7", "service:echo"}));
  EXPECT_EQ(l.lab.node_options[1].listen_mode, "echo");
  EXPECT_EQ(l.lab.node_options[1].listen_user, "") << "root unless the file says";
  const Topology u = parse_ok("name: u\nnodes:\n  a: {listen: {sap: 42, user: nobody}}\n");
  EXPECT_EQ(u.lab.node_options[0].listen_user, "nobody");
  expect_error("name: u\nnodes:\n  a: {listen: {sap: 42, user: ''}}\n", 3, "a.listen.user: empty");
  expect_error("name: u\nnodes:\n  a: {listen: {sap: 42, user: [x]}}\n", 3, "expected a single value");
  const std::vector<std::pair<std::string, std::string>> links{{"alpha", "beta"}, {"beta", "gamma"}};
  EXPECT_EQ(t.lab.links, links);
}

TEST(Topology, ASegmentJoinsItsFirstNodeToEachOther) {
  const Topology t = parse_ok("name: s\nnodes: {hub: {}, a: {}, b: {}, c: {}}\nlinks:\n  - {segment: [hub, a, b]}\n  - c-a\n");
  const std::vector<std::pair<std::string, std::string>> links{{"hub", "a"}, {"hub", "b"}, {"c", "a"}};
  EXPECT_EQ(t.lab.links, links);
  expect_error("name: s\nnodes: {a: {}}\nlinks:\n  - {segment: [a]}\n", 4, "two or more");
  expect_error("name: s\nnodes: {a: {}, b: {}}\nlinks:\n  - {segment: [a, b], impair: {loss: 1%}}\n", 4,
               "unknown key 'impair'");
}

TEST(Topology, ALinksImpairmentIsDoneByBothOfItsEndsUnlessANodeSaysOtherwise) {
  const Topology t = parse_ok(R"(
name: l2
nodes:
  a: {}
  b: {impair: "delay=5ms"}
links:
  - {between: [a, b], impair: {loss: 2%, delay: 80ms, jitter: 10ms}}
)");
  EXPECT_EQ(t.lab.node_options[0].impair, "loss=2%,delay=80ms,jitter=10ms,seed=1");
  EXPECT_EQ(t.lab.node_options[1].impair, "delay=5ms,seed=1") << "the node's own setting wins";
  const Topology u = parse_ok("name: l3\nnodes: {a: {}, b: {}}\nlinks: [{between: [a, b], impair: {loss: 1%, seed: 7}}]\n");
  EXPECT_EQ(u.lab.node_options[0].impair, "loss=1%,seed=7");
  EXPECT_EQ(u.lab.node_options[1].impair, "loss=1%,seed=8") << "each direction its own draws";
}

TEST(Topology, BadFilesAreRefusedNamingTheLineAndWhatIsWrong) {
  expect_error("name: x\nnodes:\n  a: {colour: red}\n", 3, "unknown key 'colour'");
  expect_error("name: x\nnodes:\n  a: {}\nlinks:\n  - a-z\n", 5, "no node 'z'");
  expect_error("name: x\nnodes:\n  a: {mtu: 20}\n", 3, "a.mtu: '20' is not a whole number within 68..65521");
  expect_error("name: x\nnodes:\n  a: {queues: 17}\n", 3, "a.queues");
  expect_error("name: x\nnodes:\n  a: {impair: {loss: 150%}}\n", 3, "loss");
  expect_error("name: x\nnodes:\n  a: {capture: maybe}\n", 3, "not true or false");
  expect_error("name: x\nnodes:\n  a: {listen: {sap: 0}}\n", 3, "SAP '0'");
  expect_error("name: x\nnodes:\n  a: {listen: {sap: 42, mode: loud}}\n", 3, "mode 'loud'");
  expect_error("name: x\nnodes: [a, b]\n", 2, "'nodes' must map");
  expect_error("nodes:\n  a: {}\n", 1, "no 'name'");
  expect_error("name: x\nnodes:\n  a: {}\n  b: {}\n  c: {}\nlinks:\n"
               "  - {between: [a, b], impair: {loss: 1%}}\n  - b-c\n",
               4, "b has 2 links and one is impaired");
  expect_error("name: x\nnodes:\n  a: {\n", 4, "");  // YAML syntax: the line yaml-cpp reports
  // What only the whole topology shows: the lab's own checks, file named.
  auto t = Topology::parse("name: x\nnodes: {a: {}, b: {}}\nlinks: [a-b, b-a]\n", "t.yaml");
  ASSERT_FALSE(t.has_value());
  EXPECT_NE(last_error().find("t.yaml: link b-a: closes a loop"), std::string::npos) << last_error();
  t = Topology::parse("name: TooLongName\nnodes: {a: {}}\n", "t.yaml");
  ASSERT_FALSE(t.has_value());
  EXPECT_NE(last_error().find("lab name 'TooLongName'"), std::string::npos) << last_error();
}

TEST(Topology, TheShippedExampleLabsLoad) {
  const std::filesystem::path dir = std::filesystem::path(COEMU_SOURCE_DIR) / "tools" / "labs";
  int seen = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().extension() != ".yaml") continue;
    auto t = Topology::load(e.path().string());
    ASSERT_TRUE(t.has_value()) << last_error();
    EXPECT_TRUE(emulator::Lab::validate(t->lab).has_value()) << e.path();
    for (const auto& o : t->lab.node_options)
      if (!o.pcap.empty()) {
        EXPECT_TRUE(std::filesystem::path(o.pcap).is_absolute()) << o.pcap;
      }
    ++seen;
  }
  EXPECT_GE(seen, 3) << "pair, star and lossy";
  EXPECT_FALSE(Topology::load((dir / "no-such.yaml").string()).has_value());
  EXPECT_NE(last_error().find("no-such.yaml"), std::string::npos) << last_error();
}

}  // namespace
