"""The hand-written question set of ``bench.faq`` (Korean and English): each FAQ question with
paraphrases, which should match it, and near misses, questions on the same subject that need
another answer."""

from __future__ import annotations

# (FAQ question, paraphrases, near misses)
GROUPS: list[tuple[str, list[str], list[str]]] = [
    (
        "출장 일비는 얼마인가요?",
        [
            "출장 가면 하루 일비가 얼마야?",
            "출장 시 하루에 받는 일비 금액이 궁금합니다",
            "국내 출장 일비 얼마 나와요?",
        ],
        [
            "출장 숙박비는 얼마인가요?",
            "출장 일비는 언제 지급되나요?",
            "해외 출장 항공료는 누가 부담하나요?",
        ],
    ),
    (
        "도서관 운영 시간이 어떻게 되나요?",
        [
            "도서관은 몇 시에 문을 열고 닫나요?",
            "도서관 이용 시간 알려주세요",
            "도서관 개관 시간이 언제예요?",
        ],
        [
            "도서관 위치가 어디인가요?",
            "도서관 휴관일은 언제인가요?",
            "도서관 주차장은 몇 시까지 운영하나요?",
        ],
    ),
    (
        "책은 몇 권까지 빌릴 수 있나요?",
        ["한 번에 대출 가능한 책 수는?", "최대 몇 권 대출돼요?", "도서 대출 한도가 몇 권인가요?"],
        [
            "책은 며칠 동안 빌릴 수 있나요?",
            "전자책도 빌릴 수 있나요?",
            "빌린 책을 연장할 수 있나요?",
        ],
    ),
    (
        "연체료는 얼마인가요?",
        ["책을 늦게 반납하면 벌금이 얼마죠?", "반납 기한을 넘기면 연체료가 얼마 나오나요?"],
        [
            "연체료는 어떻게 납부하나요?",
            "회원증 재발급 비용은 얼마인가요?",
            "연체하면 대출이 정지되나요?",
        ],
    ),
    (
        "비밀번호를 잊어버렸어요",
        [
            "비밀번호 재설정은 어떻게 하나요?",
            "비번이 기억이 안 나요",
            "비밀번호 찾기 방법 알려주세요",
        ],
        [
            "아이디를 잊어버렸어요",
            "비밀번호를 변경하고 싶어요 보안 규칙이 뭔가요?",
            "계정이 잠겼어요",
        ],
    ),
    (
        "열람실에 음식을 가져가도 되나요?",
        ["열람실에서 음식 먹어도 돼요?", "열람실 안에서 간식 먹을 수 있나요?"],
        [
            "열람실 좌석 예약은 어떻게 하나요?",
            "열람실에 노트북을 가져가도 되나요?",
            "열람실에서 음료는 마셔도 되나요?",
        ],
    ),
    (
        "연차 휴가는 며칠인가요?",
        ["1년에 연차가 몇 일 나와요?", "연간 휴가 일수가 어떻게 되나요?"],
        [
            "연차 휴가는 어떻게 신청하나요?",
            "병가는 며칠인가요?",
            "남은 연차는 다음 해로 이월되나요?",
        ],
    ),
    (
        "재택근무는 주 몇 회 가능한가요?",
        ["일주일에 재택 몇 번 할 수 있어요?", "재택근무 가능 횟수가 주당 몇 번인가요?"],
        [
            "재택근무 신청은 어디서 하나요?",
            "재택근무 시 장비는 지원되나요?",
            "출근 시간은 몇 시인가요?",
        ],
    ),
    (
        "배송은 얼마나 걸리나요?",
        ["주문하면 언제 도착해요?", "배송 기간이 어떻게 되나요?", "택배 받는 데 며칠 걸리나요?"],
        ["배송비는 얼마인가요?", "해외 배송도 되나요?", "배송지를 변경할 수 있나요?"],
    ),
    (
        "환불은 어떻게 받나요?",
        ["환불 절차가 어떻게 되나요?", "구매 취소하고 돈 돌려받으려면 어떻게 해요?"],
        ["교환은 어떻게 하나요?", "환불은 며칠 안에 처리되나요?", "반품 배송비는 누가 내나요?"],
    ),
    (
        "회원 탈퇴는 어떻게 하나요?",
        ["계정을 삭제하고 싶어요", "탈퇴 방법 알려주세요"],
        [
            "회원 가입은 어떻게 하나요?",
            "탈퇴하면 포인트는 어떻게 되나요?",
            "회원 등급은 어떻게 올라가나요?",
        ],
    ),
    (
        "주차 요금은 얼마인가요?",
        ["주차비가 얼마예요?", "차를 대면 요금이 얼마 나오나요?"],
        ["주차장은 어디에 있나요?", "주차 할인은 어떻게 받나요?", "주차는 몇 시간까지 가능한가요?"],
    ),
    (
        "How do I reset my password?",
        [
            "I forgot my password, how can I change it?",
            "What's the way to recover a lost password?",
            "password reset steps",
        ],
        [
            "How do I delete my account?",
            "How do I change my username?",
            "Why is my account locked?",
        ],
    ),
    (
        "What are the library opening hours?",
        [
            "When does the library open and close?",
            "What time is the library open?",
            "library hours please",
        ],
        [
            "Where is the library located?",
            "Is the library open on public holidays?",
            "What are the parking hours at the library?",
        ],
    ),
    (
        "How many books can I borrow?",
        [
            "What is the maximum number of books I can check out?",
            "How many books am I allowed to take out at once?",
            "book borrowing limit",
        ],
        [
            "How long can I keep a borrowed book?",
            "Can I borrow e-books?",
            "Can I renew a borrowed book?",
        ],
    ),
    (
        "How much is the late fee?",
        ["What's the fine for returning a book late?", "How much do I pay if my book is overdue?"],
        [
            "How do I pay a late fee?",
            "How much does a replacement card cost?",
            "Will my account be suspended for late returns?",
        ],
    ),
    (
        "How do I descale the grinder?",
        [
            "What's the procedure for cleaning limescale from the grinder?",
            "steps to descale my grinder",
        ],
        [
            "How do I change the grind size?",
            "How do I clean the burrs?",
            "How often should I descale the grinder?",
        ],
    ),
    (
        "Can I bring food into the reading room?",
        [
            "Is eating allowed in the reading room?",
            "Am I allowed to eat snacks in the reading room?",
        ],
        [
            "Can I bring my laptop into the reading room?",
            "How do I reserve a seat in the reading room?",
            "Can I drink water in the reading room?",
        ],
    ),
    (
        "How long does shipping take?",
        ["When will my order arrive?", "What is the delivery time?", "how many days for delivery"],
        [
            "How much does shipping cost?",
            "Do you ship internationally?",
            "Can I change my shipping address?",
        ],
    ),
    (
        "How do I get a refund?",
        ["What is the refund process?", "How can I get my money back?"],
        [
            "How do I exchange an item?",
            "How long does a refund take?",
            "Who pays for return shipping?",
        ],
    ),
    (
        "How many vacation days do I get?",
        ["How much annual leave am I entitled to?", "What is my yearly paid time off allowance?"],
        [
            "How do I request vacation?",
            "How many sick days do I get?",
            "Do unused vacation days carry over?",
        ],
    ),
    (
        "How many days a week can I work from home?",
        [
            "How often am I allowed to work remotely each week?",
            "What is the remote work limit per week?",
        ],
        [
            "How do I apply for remote work?",
            "Does the company provide equipment for remote work?",
            "What time does work start?",
        ],
    ),
    (
        "What is the daily allowance for business trips?",
        ["How much per diem do I get on a business trip?", "business trip per diem amount"],
        [
            "What is the hotel allowance for business trips?",
            "When is the business trip allowance paid?",
            "Who pays for flights on business trips?",
        ],
    ),
    (
        "How much is parking?",
        ["What does parking cost?", "What are the parking fees?"],
        ["Where is the parking lot?", "How do I get a parking discount?", "How long can I park?"],
    ),
]
