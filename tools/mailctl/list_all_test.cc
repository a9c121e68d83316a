// ListAll (tenant_client.h) against a real gRPC server on loopback that
// pages the way tenantd does (at most 1,000 items a page, an opaque next
// token): every page is fetched and merged, and an error on a later page is
// the answer, never a silently short list. The server is a stand-in for
// tenantd's DirectoryService: the pager is what is under test.
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "gtest/gtest.h"
#include "mailgrid/tenant/v1/directory.grpc.pb.h"
#include "tools/mailctl/tenant_client.h"

namespace mailgrid::mailctl {
namespace {

namespace dirv1 = ::mailgrid::tenant::v1;

class PagedAliases final : public dirv1::DirectoryService::Service {
 public:
  explicit PagedAliases(int total) : total_(total) {}

  grpc::Status ListAliases(grpc::ServerContext*, const dirv1::ListAliasesRequest* req,
                           dirv1::ListAliasesResponse* resp) override {
    page_sizes.push_back(req->page().page_size());
    int from = 0;
    if (!req->page().page_token().empty() && !absl::SimpleAtoi(req->page().page_token(), &from))
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "page.page_token: bad");
    if (fail_from > 0 && from >= fail_from)
      return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "token expired");
    const int size = std::min(req->page().page_size() <= 0 ? 50 : req->page().page_size(), 1000);
    for (int i = from; i < std::min(from + size, total_); ++i) {
      resp->add_aliases()->set_address(absl::StrCat("a", i, "@acme.cn"));
    }
    if (from + size < total_) resp->mutable_page_info()->set_next_page_token(absl::StrCat(from + size));
    resp->mutable_page_info()->set_total_size(total_);
    return grpc::Status::OK;
  }

  std::vector<int> page_sizes;
  int fail_from = 0;  // > 0: pages starting at or after this offset fail

 private:
  const int total_;
};

class ListAllTest : public ::testing::Test {
 protected:
  void Serve(int total) {
    service_ = std::make_unique<PagedAliases>(total);
    grpc::ServerBuilder b;
    int port = 0;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    b.RegisterService(service_.get());
    server_ = b.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    Args args;
    args.options["tenantd"] = absl::StrCat("127.0.0.1:", port);
    auto client = TenantdClient::Connect(Invocation{}, args);
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = std::make_unique<TenantdClient>(*std::move(client));
  }
  void TearDown() override {
    if (server_) server_->Shutdown();
  }
  absl::StatusOr<dirv1::ListAliasesResponse> ListAliases() {
    return ListAll(*client_, dirv1::ListAliasesRequest(),
                   &dirv1::DirectoryService::Stub::ListAliases);
  }

  std::unique_ptr<PagedAliases> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<TenantdClient> client_;
};

TEST_F(ListAllTest, FetchesEveryPageAndMergesThemInOrder) {
  Serve(2501);
  auto all = ListAliases();
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_EQ(all->aliases_size(), 2501);
  for (int i = 0; i < all->aliases_size(); ++i)
    ASSERT_EQ(all->aliases(i).address(), absl::StrCat("a", i, "@acme.cn"));
  EXPECT_FALSE(all->has_page_info());  // one merged answer: no page left to ask for
  EXPECT_EQ(service_->page_sizes, (std::vector<int>{1000, 1000, 1000}));
}

TEST_F(ListAllTest, AnEmptyListIsOneCall) {
  Serve(0);
  auto all = ListAliases();
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(all->aliases_size(), 0);
  EXPECT_EQ(service_->page_sizes.size(), 1u);
}

TEST_F(ListAllTest, AnErrorOnALaterPageIsTheAnswer) {
  Serve(2501);
  service_->fail_from = 1000;
  auto all = ListAliases();
  ASSERT_FALSE(all.ok());
  EXPECT_EQ(all.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(all.status().message(), "UNAUTHENTICATED: token expired");
}

}  // namespace
}  // namespace mailgrid::mailctl
