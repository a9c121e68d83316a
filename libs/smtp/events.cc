#include "libs/smtp/events.h"

#include <type_traits>

namespace mailgrid::smtp {

bool NeedsDecision(const Event& e) {
  return std::visit(
      [](const auto& ev) {
        using T = std::decay_t<decltype(ev)>;
        return std::is_same_v<T, event::Greeting> || std::is_same_v<T, event::Helo> ||
               std::is_same_v<T, event::MailFrom> || std::is_same_v<T, event::RcptTo> ||
               std::is_same_v<T, event::DataBegin> || std::is_same_v<T, event::MessageComplete> ||
               std::is_same_v<T, event::StartTls> || std::is_same_v<T, event::Auth> ||
               std::is_same_v<T, event::AuthResponse> || std::is_same_v<T, event::Vrfy>;
      },
      e);
}

std::string_view EventName(const Event& e) {
  static constexpr std::string_view kNames[] = {"NeedInput",
                                                "AwaitingDecision",
                                                "Closed",
                                                "Greeting",
                                                "Helo",
                                                "MailFrom",
                                                "RcptTo",
                                                "DataBegin",
                                                "MessageComplete",
                                                "StartTls",
                                                "Auth",
                                                "AuthResponse",
                                                "AuthCancelled",
                                                "Vrfy",
                                                "Rset",
                                                "Noop",
                                                "Help",
                                                "Quit"};
  static_assert(std::size(kNames) == std::variant_size_v<Event>);
  return kNames[e.index()];
}

}  // namespace mailgrid::smtp
